"""cluster documents: each cluster's rendered response, and the revision it was rendered at

`cluster_revisions` holds one narrow row per cluster: `revision`, bumped by triggers on
every write to a row that a cluster's response shows (the cluster's presented columns,
its nodes and their hosts' facts, phase histories, lifecycle events, volumes and
remediations), and `rendered`, the revision its stored document was rendered at.
`cluster_documents` holds that document (the response without its kube_config, which is
sealed at rest and added at read time) and until when it holds (a lifecycle event ages out
of the response after 72 hours).

On PostgreSQL a transaction bumps a cluster's revision once, however many of its rows it
writes (see `_bump`); a document is therefore stored only at the end of the transaction
that rendered it, after its last write.

The triggers make the revision complete by construction: no code path can change what a
response shows without bumping it, whichever service, controller, replica or operator's
SQL wrote. Only the columns a response shows fire them, so a lease or a due time does not.
The revision lives apart from the wide cluster row and its document, so a bump rewrites a
few bytes, not the row or a document of megabytes.

Revision ID: 0017_cluster_documents
Revises: 0015_read_paths
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from clusterplane.db.types import UTCDateTime

revision = '0017_cluster_documents'
down_revision = '0015_read_paths'
branch_labels = None
depends_on = None

CLUSTER_COLUMNS = [
    'project_id', 'organization_id', 'name', 'cluster_type', 'region', 'gpu_type',
    'billing_type', 'phase', 'status', 'num_gpus', 'num_reserved_gpus',
    'num_capacity_pool_gpus', 'capacity_pool_id', 'desired_preemptible_gpus',
    'num_cpu_workers', 'cuda_version', 'nvidia_driver_version', 'nvidia_driver_version_id',
    'os_image', 'duration_hours', 'reservation_start_time', 'reservation_end_time',
    'install_traefik', 'slurm_shm_size_gib', 'add_ons', 'cluster_config', 'oidc_config',
    'applied_config', 'kube_config', 'control_plane_ready', 'created_at', 'first_ready_at',
    'deleted_at',
]
NODE_COLUMNS = [
    'cluster_id', 'role', 'ordinal', 'node_name', 'instance_id', 'host_id', 'host_name',
    'status', 'num_cpu_cores', 'num_gpus', 'memory_gib', 'networks', 'public_ipv4',
    'slurm_worker_hostname', 'preemptible', 'auto_remediation_enabled',
    'marked_for_deletion', 'deleted_at',
]
REMEDIATION_COLUMNS = [
    'cluster_id', 'node_row_id', 'instance_id', 'mode', 'state', 'trigger', 'instance_name',
    'reason', 'requested_by', 'reviewed_by', 'review_time', 'review_comment', 'create_time',
    'start_time', 'end_time', 'update_time', 'error_message', 'active_health_check_run_id',
    'passive_health_check_event_id',
]
VOLUME_COLUMNS = ['cluster_id', 'name', 'size_tib', 'status', 'deleted_at']
HOST_FACTS = ['ephemeral_storage', 'ib_hca_count', 'ib_hca_type', 'nvswitch_count', 'nvswitch_type']

# table -> (the clusters a row of it shows in, as a SELECT over `{row}`; the columns whose
# update changes a response; whether inserts and deletes do).
SOURCES: dict[str, tuple[str, list[str], bool]] = {
    'clusters': ('SELECT {row}.id', CLUSTER_COLUMNS, False),
    'cluster_phase_transitions': (
        'SELECT {row}.cluster_id', ['cluster_id', 'phase', 'transition_time'], True
    ),
    'nodes': ('SELECT {row}.cluster_id', NODE_COLUMNS, True),
    'node_phase_transitions': (
        'SELECT cluster_id FROM nodes WHERE id = {row}.node_row_id',
        ['node_row_id', 'phase', 'transition_time'],
        True,
    ),
    'node_lifecycle_events': (
        'SELECT {row}.cluster_id',
        ['cluster_id', 'node_name', 'reason', 'message', 'timestamp'],
        True,
    ),
    'volumes': ('SELECT {row}.cluster_id', VOLUME_COLUMNS, True),
    'remediations': ('SELECT {row}.cluster_id', REMEDIATION_COLUMNS, True),
    'hosts': ('SELECT cluster_id FROM nodes WHERE host_id = {row}.id', HOST_FACTS, False),
}


def _bump(*rows: str, source: str, once_per_transaction: bool = False) -> str:
    clusters = ' UNION '.join(source.format(row=row) for row in rows)
    # On PostgreSQL every update of a row writes a new version of it, and updating one
    # row thousands of times in a transaction (a create's or a pass's node rows) walks a
    # growing chain of them: a 2,048-node create took 3.8 s instead of 0.5 s. Readers
    # only ever see committed states, so one bump per transaction says as much: a row
    # this transaction already wrote (its `xmin`) is left alone.
    guard = ' AND xmin <> pg_current_xact_id()::xid' if once_per_transaction else ''
    return (
        'UPDATE cluster_revisions SET revision = revision + 1 '
        f'WHERE cluster_id IN ({clusters}){guard};'
    )


def _sqlite_triggers() -> list[str]:
    statements = [
        'CREATE TRIGGER cp_clusters_insert AFTER INSERT ON clusters BEGIN '
        'INSERT INTO cluster_revisions (cluster_id, revision, rendered) VALUES (NEW.id, 1, 0); '
        'END',
        'CREATE TRIGGER cp_clusters_delete AFTER DELETE ON clusters BEGIN '
        'DELETE FROM cluster_revisions WHERE cluster_id = OLD.id; '
        'DELETE FROM cluster_documents WHERE cluster_id = OLD.id; END',
    ]
    for table, (source, columns, rows_count) in SOURCES.items():
        statements.append(
            f'CREATE TRIGGER cp_{table}_update AFTER UPDATE OF {", ".join(columns)} '
            f'ON {table} BEGIN {_bump("NEW", "OLD", source=source)} END'
        )
        if rows_count:
            statements.append(
                f'CREATE TRIGGER cp_{table}_insert AFTER INSERT ON {table} '
                f'BEGIN {_bump("NEW", source=source)} END'
            )
            statements.append(
                f'CREATE TRIGGER cp_{table}_delete AFTER DELETE ON {table} '
                f'BEGIN {_bump("OLD", source=source)} END'
            )
    return statements


def _postgresql_triggers() -> list[str]:
    statements = [
        'CREATE FUNCTION cp_clusters_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
        'INSERT INTO cluster_revisions (cluster_id, revision, rendered) VALUES (NEW.id, 1, 0); '
        'RETURN NULL; END $$',
        'CREATE TRIGGER cp_clusters_insert AFTER INSERT ON clusters '
        'FOR EACH ROW EXECUTE FUNCTION cp_clusters_insert()',
        'CREATE FUNCTION cp_clusters_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
        'DELETE FROM cluster_revisions WHERE cluster_id = OLD.id; '
        'DELETE FROM cluster_documents WHERE cluster_id = OLD.id; RETURN NULL; END $$',
        'CREATE TRIGGER cp_clusters_delete AFTER DELETE ON clusters '
        'FOR EACH ROW EXECUTE FUNCTION cp_clusters_delete()',
    ]
    for table, (source, columns, rows_count) in SOURCES.items():
        statements += [
            f'CREATE FUNCTION cp_{table}_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
            f"IF TG_OP = 'INSERT' THEN {_bump('NEW', source=source, once_per_transaction=True)} "
            f"ELSIF TG_OP = 'DELETE' THEN {_bump('OLD', source=source, once_per_transaction=True)} "
            f"ELSE {_bump('NEW', 'OLD', source=source, once_per_transaction=True)} END IF; "
            "RETURN NULL; END $$",
            f'CREATE TRIGGER cp_{table}_update AFTER UPDATE OF {", ".join(columns)} '
            f'ON {table} FOR EACH ROW EXECUTE FUNCTION cp_{table}_touch()',
        ]
        if rows_count:
            statements.append(
                f'CREATE TRIGGER cp_{table}_rows AFTER INSERT OR DELETE ON {table} '
                f'FOR EACH ROW EXECUTE FUNCTION cp_{table}_touch()'
            )
    return statements


def upgrade() -> None:
    op.create_table(
        'cluster_revisions',
        sa.Column('cluster_id', sa.String(64), primary_key=True),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('rendered', sa.Integer(), nullable=False),
    )
    # The clusters whose document is behind: what the refresher scans for.
    op.create_index(
        'ix_cluster_revisions_behind',
        'cluster_revisions',
        ['cluster_id'],
        sqlite_where=sa.text('rendered <> revision'),
        postgresql_where=sa.text('rendered <> revision'),
    )
    op.create_table(
        'cluster_documents',
        sa.Column('cluster_id', sa.String(64), primary_key=True),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('valid_until', UTCDateTime(), nullable=True),
    )
    op.create_index('ix_cluster_documents_valid_until', 'cluster_documents', ['valid_until'])
    # A host's facts show in the nodes on it: the host trigger finds them by this.
    op.create_index('ix_nodes_host_id', 'nodes', ['host_id'])
    op.execute('INSERT INTO cluster_revisions (cluster_id, revision, rendered) SELECT id, 1, 0 FROM clusters')
    dialect = op.get_bind().dialect.name
    for statement in _postgresql_triggers() if dialect == 'postgresql' else _sqlite_triggers():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    names = ['cp_clusters_insert', 'cp_clusters_delete']
    for table, (_, _, rows_count) in SOURCES.items():
        names.append(f'cp_{table}_update')
        if rows_count:
            names += [f'cp_{table}_insert', f'cp_{table}_delete', f'cp_{table}_rows']
    tables = {name: 'clusters' for name in names[:2]}
    for table in SOURCES:
        for suffix in ('update', 'insert', 'delete', 'rows'):
            tables[f'cp_{table}_{suffix}'] = table
    for name in names:
        if dialect == 'postgresql':
            op.execute(f'DROP TRIGGER IF EXISTS {name} ON {tables[name]}')
        else:
            op.execute(f'DROP TRIGGER IF EXISTS {name}')
    if dialect == 'postgresql':
        op.execute('DROP FUNCTION IF EXISTS cp_clusters_insert()')
        op.execute('DROP FUNCTION IF EXISTS cp_clusters_delete()')
        for table in SOURCES:
            op.execute(f'DROP FUNCTION IF EXISTS cp_{table}_touch()')
    op.drop_index('ix_nodes_host_id', table_name='nodes')
    op.drop_index('ix_cluster_documents_valid_until', table_name='cluster_documents')
    op.drop_table('cluster_documents')
    op.drop_index('ix_cluster_revisions_behind', table_name='cluster_revisions')
    op.drop_table('cluster_revisions')

"""health: passive events, active check runs, simulated host faults, repair policy

Adds `health_events` (ingested signals and what they caused), `health_check_runs` (active
checks and their evidence), `host_faults` (the simulated fleet's ground truth), the node's
health and cordon owner, the remediation's verification run, and the per-project and
per-cluster auto-approve policy with the cluster's stop-rule reason.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clusterplane.db.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

DT = clusterplane.db.types.UTCDateTime


def _lease_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column('deleted_at', DT(), nullable=True),
        sa.Column('next_reconcile_at', DT(), nullable=True),
        sa.Column('lease_owner', sa.String(length=64), nullable=True),
        sa.Column('lease_token', sa.String(length=64), nullable=True),
        sa.Column('lease_expires_at', DT(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        'health_events',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('host_id', sa.String(length=64), nullable=False),
        sa.Column('host_name', sa.String(length=128), nullable=False),
        sa.Column('cluster_id', sa.String(length=64), nullable=True),
        sa.Column('node_row_id', sa.String(length=64), nullable=True),
        sa.Column('instance_id', sa.String(length=64), nullable=True),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('code', sa.Integer(), nullable=True),
        sa.Column('gpu_index', sa.Integer(), nullable=True),
        sa.Column('alert_name', sa.String(length=64), nullable=False),
        sa.Column('severity', sa.String(length=32), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('title', sa.String(length=128), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('source', sa.String(length=32), nullable=False),
        sa.Column('check_run_id', sa.String(length=64), nullable=True),
        sa.Column('observed_at', DT(), nullable=False),
        sa.Column('ingested_at', DT(), nullable=False),
        sa.Column('resolved_at', DT(), nullable=True),
        sa.Column('remediation_id', sa.String(length=64), nullable=True),
        sa.Column('held_reason', sa.Text(), nullable=True),
        *_lease_columns(),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('health_events', schema=None) as batch_op:
        batch_op.create_index('ix_health_events_host_open', ['host_id', 'resolved_at'])
        batch_op.create_index('ix_health_events_node', ['node_row_id'])
        batch_op.create_index(batch_op.f('ix_health_events_cluster_id'), ['cluster_id'])
        batch_op.create_index(batch_op.f('ix_health_events_remediation_id'), ['remediation_id'])
        batch_op.create_index(
            batch_op.f('ix_health_events_next_reconcile_at'), ['next_reconcile_at']
        )
    op.create_table(
        'health_check_runs',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('host_id', sa.String(length=64), nullable=False),
        sa.Column('host_name', sa.String(length=128), nullable=False),
        sa.Column('cluster_id', sa.String(length=64), nullable=True),
        sa.Column('node_row_id', sa.String(length=64), nullable=True),
        sa.Column('check', sa.String(length=32), nullable=False),
        sa.Column('level', sa.Integer(), nullable=True),
        sa.Column('purpose', sa.String(length=32), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('remediation_id', sa.String(length=64), nullable=True),
        sa.Column('created_at', DT(), nullable=False),
        sa.Column('started_at', DT(), nullable=True),
        sa.Column('finished_at', DT(), nullable=True),
        *_lease_columns(),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('health_check_runs', schema=None) as batch_op:
        batch_op.create_index('ix_health_check_runs_host', ['host_id', 'created_at'])
        batch_op.create_index(batch_op.f('ix_health_check_runs_cluster_id'), ['cluster_id'])
        batch_op.create_index(
            batch_op.f('ix_health_check_runs_next_reconcile_at'), ['next_reconcile_at']
        )
    op.create_table(
        'host_faults',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('host_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('code', sa.Integer(), nullable=True),
        sa.Column('fixed_by', sa.String(length=16), nullable=False),
        sa.Column('injected_at', DT(), nullable=False),
        sa.Column('clears_at', DT(), nullable=True),
        sa.Column('cleared_at', DT(), nullable=True),
        sa.Column('event_id', sa.String(length=64), nullable=True),
        *_lease_columns(),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('host_faults', schema=None) as batch_op:
        batch_op.create_index('ix_host_faults_open', ['host_id', 'cleared_at'])
        batch_op.create_index(
            batch_op.f('ix_host_faults_next_reconcile_at'), ['next_reconcile_at']
        )
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'auto_approve_remediations', sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'auto_approve_remediations', sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.add_column(sa.Column('remediation_paused_reason', sa.Text(), nullable=True))
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('health', sa.String(length=16), nullable=False, server_default='healthy')
        )
        batch_op.add_column(sa.Column('cordoned_by', sa.String(length=64), nullable=True))
    with op.batch_alter_table('remediations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verification_run_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('remediations', schema=None) as batch_op:
        batch_op.drop_column('verification_run_id')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('cordoned_by')
        batch_op.drop_column('health')
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_column('remediation_paused_reason')
        batch_op.drop_column('auto_approve_remediations')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_column('auto_approve_remediations')
    op.drop_table('host_faults')
    op.drop_table('health_check_runs')
    op.drop_table('health_events')

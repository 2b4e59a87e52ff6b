"""events: whose each event is, and an outbox; webhook endpoints and deliveries

`events` gains the project that sees each event (None: the operator only), the cluster
and node it concerns, indexes for querying by them and by time, and `fanout_pending`,
the flag that queues new events for webhook fan-out (a partial index keeps that queue
cheap to read). Events already recorded get their scope from the objects they are about
and are not fanned out (they happened before any endpoint existed).
`webhook_endpoints` are the receivers projects and the operator register;
`webhook_deliveries` is the outbox: one row per event and endpoint, with its attempts.

Revision ID: 0012_webhooks
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from clusterplane.db.types import UTCDateTime

revision = '0012_webhooks'
down_revision = '0011'
branch_labels = None
depends_on = None

PENDING = sa.text('fanout_pending')
_PROJECT_OF_CLUSTER = '(SELECT c.project_id FROM clusters c WHERE c.id = events.cluster_id)'
# Scope of the events already recorded, by the type of object they are about.
BACKFILL = (
    "UPDATE events SET cluster_id = object_id WHERE object_type = 'cluster'",
    "UPDATE events SET node_row_id = object_id, cluster_id = "
    "(SELECT n.cluster_id FROM nodes n WHERE n.id = events.object_id) "
    "WHERE object_type = 'node'",
    "UPDATE events SET project_id = (SELECT v.project_id FROM volumes v "
    "WHERE v.id = events.object_id), cluster_id = (SELECT v.cluster_id FROM volumes v "
    "WHERE v.id = events.object_id) WHERE object_type = 'volume'",
    "UPDATE events SET cluster_id = (SELECT r.cluster_id FROM remediations r "
    "WHERE r.id = events.object_id), node_row_id = (SELECT r.node_row_id FROM remediations r "
    "WHERE r.id = events.object_id) WHERE object_type = 'remediation'",
    "UPDATE events SET cluster_id = (SELECT h.cluster_id FROM health_events h "
    "WHERE h.id = events.object_id), node_row_id = (SELECT h.node_row_id FROM health_events h "
    "WHERE h.id = events.object_id) WHERE object_type = 'health_event'",
    "UPDATE events SET cluster_id = (SELECT r.cluster_id FROM health_check_runs r "
    "WHERE r.id = events.object_id), node_row_id = (SELECT r.node_row_id "
    "FROM health_check_runs r WHERE r.id = events.object_id) "
    "WHERE object_type = 'health_check_run'",
    f"UPDATE events SET project_id = {_PROJECT_OF_CLUSTER} "
    "WHERE project_id IS NULL AND cluster_id IS NOT NULL",
)


def _scope_events() -> None:
    op.add_column('events', sa.Column('project_id', sa.String(64), nullable=True))
    op.add_column('events', sa.Column('cluster_id', sa.String(64), nullable=True))
    op.add_column('events', sa.Column('node_row_id', sa.String(64), nullable=True))
    op.add_column(
        'events',
        sa.Column('fanout_pending', sa.Boolean(), nullable=False, server_default=sa.text('false')),
    )
    for statement in BACKFILL:
        op.execute(statement)
    op.create_index('ix_events_project', 'events', ['project_id', 'id'])
    op.create_index('ix_events_cluster', 'events', ['cluster_id', 'id'])
    op.create_index('ix_events_node', 'events', ['node_row_id', 'id'])
    op.create_index('ix_events_at', 'events', ['at'])
    op.create_index(
        'ix_events_fanout_pending', 'events', ['id'], sqlite_where=PENDING, postgresql_where=PENDING
    )


def upgrade() -> None:
    _scope_events()
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.String(64), primary_key=True),
        sa.Column('project_id', sa.String(64), nullable=True),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('kinds', sa.JSON(), nullable=False),
        sa.Column('description', sa.String(256), nullable=False),
        sa.Column('secret', sa.Text(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_by', sa.String(64), nullable=False),
        sa.Column('dropped', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('deleted_at', UTCDateTime(), nullable=True),
    )
    op.create_index(
        'ix_webhook_endpoints_project', 'webhook_endpoints', ['project_id', 'deleted_at']
    )
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.String(64), primary_key=True),
        sa.Column(
            'endpoint_id', sa.String(64), sa.ForeignKey('webhook_endpoints.id'), nullable=False
        ),
        sa.Column('project_id', sa.String(64), nullable=True),
        sa.Column('event_id', sa.Integer(), sa.ForeignKey('events.id'), nullable=False),
        sa.Column('kind', sa.String(100), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('attempts', sa.JSON(), nullable=False),
        sa.Column('replays', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.Column('next_attempt_at', UTCDateTime(), nullable=True),
        sa.Column('lease_owner', sa.String(64), nullable=True),
        sa.Column('lease_token', sa.String(64), nullable=True),
        sa.Column('lease_expires_at', UTCDateTime(), nullable=True),
    )
    op.create_index(
        'ix_webhook_deliveries_due', 'webhook_deliveries', ['state', 'next_attempt_at']
    )
    op.create_index(
        'ix_webhook_deliveries_endpoint', 'webhook_deliveries', ['endpoint_id', 'created_at', 'id']
    )
    op.create_index('ix_webhook_deliveries_project', 'webhook_deliveries', ['project_id', 'state'])
    op.create_index('ix_webhook_deliveries_finished', 'webhook_deliveries', ['finished_at'])
    op.create_index('ix_webhook_deliveries_leased', 'webhook_deliveries', ['lease_expires_at'])


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_endpoints')
    for name in (
        'ix_events_fanout_pending',
        'ix_events_at',
        'ix_events_node',
        'ix_events_cluster',
        'ix_events_project',
    ):
        op.drop_index(name, table_name='events')
    with op.batch_alter_table('events') as batch_op:
        for column in ('fanout_pending', 'node_row_id', 'cluster_id', 'project_id'):
            batch_op.drop_column(column)

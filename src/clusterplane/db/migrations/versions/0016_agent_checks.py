"""agent checks: active checks a host's agent is asked to run, and what it reported

`agent_checks` holds one row per (host, run id): the check kind and level, "requested"
until the agent reports, then "done" with the figures it measured or "failed" with why.

Revision ID: 0016_agent_checks
Revises: 0011
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from clusterplane.db.types import UTCDateTime

revision = '0016_agent_checks'
down_revision = '0012_webhooks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'agent_checks',
        sa.Column('host_id', sa.String(64), sa.ForeignKey('hosts.id'), primary_key=True),
        sa.Column('run_id', sa.String(255), primary_key=True),
        sa.Column('kind', sa.String(32), nullable=False),
        sa.Column('level', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('figures', sa.JSON(), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('requested_at', UTCDateTime(), nullable=False),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
    )
    op.create_index('ix_agent_checks_host_state', 'agent_checks', ['host_id', 'state'])


def downgrade() -> None:
    op.drop_index('ix_agent_checks_host_state', table_name='agent_checks')
    op.drop_table('agent_checks')

"""node agents: join tokens, enrolled agent hosts, request nonces, host assignments

Hosts join the fleet by enrolling their agent with a one-time join token (`join_tokens`,
secrets kept as a salted HMAC); `agent_hosts` binds the agent's Ed25519 key to its host
and keeps what it last reported; `agent_nonces` refuses replayed signed requests;
`host_assignments` is each host's generation-numbered desired state; `agent_health_keys`
makes each signal an agent reports one health event, however often it is re-sent.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from clusterplane.db.types import UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'join_tokens',
        sa.Column('id', sa.String(64), primary_key=True),
        sa.Column('salt', sa.String(64), nullable=False),
        sa.Column('secret_hmac', sa.String(64), nullable=False),
        sa.Column('region', sa.String(64), nullable=False),
        sa.Column('fabric', sa.String(64), nullable=True),
        sa.Column('block', sa.String(64), nullable=True),
        sa.Column('rack', sa.String(64), nullable=True),
        sa.Column('created_by', sa.String(64), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.Column('revoked_at', UTCDateTime(), nullable=True),
        sa.Column('used_at', UTCDateTime(), nullable=True),
        sa.Column('host_id', sa.String(64), nullable=True),
    )
    op.create_table(
        'agent_hosts',
        sa.Column('host_id', sa.String(64), sa.ForeignKey('hosts.id'), primary_key=True),
        sa.Column('public_key', sa.String(64), nullable=False, unique=True),
        sa.Column('join_token_id', sa.String(64), nullable=False),
        sa.Column('enrolled_at', UTCDateTime(), nullable=False),
        sa.Column('inventory', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('last_seen_at', UTCDateTime(), nullable=False),
        sa.Column('generation_applied', sa.Integer(), nullable=False),
        sa.Column('phase', sa.String(16), nullable=False),
        sa.Column('report', sa.JSON(), nullable=True),
        sa.Column('held_out', sa.Boolean(), nullable=False),
    )
    op.create_index('ix_agent_hosts_silence', 'agent_hosts', ['status', 'last_seen_at'])
    op.create_table(
        'agent_nonces',
        sa.Column('host_id', sa.String(64), primary_key=True),
        sa.Column('nonce', sa.String(64), primary_key=True),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
    )
    op.create_index('ix_agent_nonces_expires_at', 'agent_nonces', ['expires_at'])
    op.create_table(
        'host_assignments',
        sa.Column('host_id', sa.String(64), sa.ForeignKey('hosts.id'), primary_key=True),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('cluster_id', sa.String(64), nullable=True),
        sa.Column('spec', sa.JSON(), nullable=False),
        sa.Column('sealed_secrets', sa.Text(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
    )


    op.create_table(
        'agent_health_keys',
        sa.Column('host_id', sa.String(64), primary_key=True),
        sa.Column('key', sa.String(200), primary_key=True),
        sa.Column('event_id', sa.String(64), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('agent_health_keys')
    op.drop_table('host_assignments')
    op.drop_index('ix_agent_nonces_expires_at', table_name='agent_nonces')
    op.drop_table('agent_nonces')
    op.drop_index('ix_agent_hosts_silence', table_name='agent_hosts')
    op.drop_table('agent_hosts')
    op.drop_table('join_tokens')

"""capacity: pools, pool membership of hosts, drain windows of preempted nodes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clusterplane.db.types

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('capacity_pools',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('region', sa.String(length=64), nullable=False),
    sa.Column('gpu_type', sa.String(length=32), nullable=False),
    sa.Column('project_id', sa.String(length=64), nullable=True),
    sa.Column('organization_id', sa.String(length=64), nullable=True),
    sa.Column('starts_at', clusterplane.db.types.UTCDateTime(), nullable=False),
    sa.Column('ends_at', clusterplane.db.types.UTCDateTime(), nullable=False),
    sa.Column('created_at', clusterplane.db.types.UTCDateTime(), nullable=False),
    sa.Column('deleted_at', clusterplane.db.types.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('capacity_pool_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_hosts_capacity_pool_id'), ['capacity_pool_id'], unique=False)
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('drain_until', clusterplane.db.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('drain_until')
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hosts_capacity_pool_id'))
        batch_op.drop_column('capacity_pool_id')
    op.drop_table('capacity_pools')

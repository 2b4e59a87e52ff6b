"""fleet policy, host draining and project quotas

`regions.allow_cross_fabric` records the operator's placement policy; `hosts.draining`
marks hosts the operator has drained (they keep their cluster but are never handed out);
`project_quotas` holds the operator's per-project GPU limits.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa

import clusterplane.db.types
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('allow_cross_fabric', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('draining', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table('project_quotas',
    sa.Column('project_id', sa.String(length=64), nullable=False),
    sa.Column('max_gpus', sa.Integer(), nullable=False),
    sa.Column('updated_at', clusterplane.db.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('project_id')
    )


def downgrade() -> None:
    op.drop_table('project_quotas')
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('draining')
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_column('allow_cross_fabric')

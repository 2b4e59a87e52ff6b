"""regions: shared-storage capacity in TiB; clusters: the add-ons the driver applied

Each region has room for so many TiB of shared volumes (the fleet file's `storage_tib`);
volume creates and resizes past it are refused. `clusters.applied_config` holds the
add-ons and cluster_config the driver last applied, so the API can report each add-on as
pending or applied.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('storage_capacity_tib', sa.Integer(), nullable=False, server_default='1024')
        )
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('applied_config', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_column('applied_config')
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_column('storage_capacity_tib')

"""project_quotas: preemptible GPU and storage limits; clusters: a booking's fabric, order

A project's quota row may now limit its preemptible GPU targets and its shared storage
(None: the default share of each region), and need not limit standard GPUs (`max_gpus`
nullable). `clusters.booked_fabric` is the fabric a reservation's hosts are booked in, so
its start places it where the calendar counted it; `clusters.booked_seq` (from the
per-region counter `regions.booking_seq`) is the order bookings were made in, which says
which on-demand clusters yield to a reservation.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('project_quotas', schema=None) as batch_op:
        batch_op.alter_column('max_gpus', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('max_preemptible_gpus', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_storage_tib', sa.Integer(), nullable=True))
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('booked_fabric', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('booked_seq', sa.Integer(), nullable=True))
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('booking_seq', sa.Integer(), nullable=False, server_default='0')
        )


def downgrade() -> None:
    with op.batch_alter_table('regions', schema=None) as batch_op:
        batch_op.drop_column('booking_seq')
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_column('booked_seq')
        batch_op.drop_column('booked_fabric')
    with op.batch_alter_table('project_quotas', schema=None) as batch_op:
        batch_op.drop_column('max_storage_tib')
        batch_op.drop_column('max_preemptible_gpus')
    op.execute('DELETE FROM project_quotas WHERE max_gpus IS NULL')
    with op.batch_alter_table('project_quotas', schema=None) as batch_op:
        batch_op.alter_column('max_gpus', existing_type=sa.Integer(), nullable=False)

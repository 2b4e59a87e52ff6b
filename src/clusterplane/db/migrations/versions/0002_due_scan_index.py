"""clusters: the due-row index leads with deleted_at

The controllers' due scan asks for `deleted_at IS NULL AND next_reconcile_at <= now ORDER
BY next_reconcile_at`. With an index on `next_reconcile_at` alone, SQLite's planner took
`ix_clusters_deleted_at` instead and read (and sorted) every live cluster on every pass,
several times a second: O(clusters) while idle. Leading with `deleted_at` makes the scan
read only the due rows, already in order, on SQLite and PostgreSQL alike.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_index('ix_clusters_due')
        batch_op.create_index('ix_clusters_due', ['deleted_at', 'next_reconcile_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_index('ix_clusters_due')
        batch_op.create_index('ix_clusters_due', ['next_reconcile_at'], unique=False)

"""remediations: at most one open remediation per node

A partial unique index on `node_row_id` over the rows not yet terminal, so two requests
(or a request and a health signal, on two replicas) cannot both open a repair of one node.
Nodes that already have several open remediations keep the one furthest along (executing
before pending, then the oldest); the others are closed as CANCELLED first.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

TERMINAL = "('AUTO_RESOLVED', 'CANCELLED', 'FAILED', 'SUCCEEDED')"
WAITING = ('PENDING_APPROVAL', 'PENDING')
CLOSED_WHY = 'closed when one open remediation per node became the rule (migration 0011)'


def _close_extra_open_remediations() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            f"SELECT id, node_row_id, state FROM remediations WHERE state NOT IN {TERMINAL} "
            "ORDER BY node_row_id, create_time, id"
        )
    ).all()
    by_node: dict[str, list[tuple[str, str]]] = {}
    for row_id, node_row_id, state in rows:
        by_node.setdefault(node_row_id, []).append((row_id, state))
    extra: list[str] = []
    for open_rows in by_node.values():
        ranked = sorted(open_rows, key=lambda r: r[1] in WAITING)  # stable: oldest first
        extra += [row_id for row_id, _ in ranked[1:]]
    for row_id in extra:
        conn.execute(
            sa.text(
                "UPDATE remediations SET state = 'CANCELLED', end_time = update_time, "
                "next_reconcile_at = NULL, error_message = :why WHERE id = :id"
            ),
            {"why": CLOSED_WHY, "id": row_id},
        )


def upgrade() -> None:
    _close_extra_open_remediations()
    where = sa.text(f"state NOT IN {TERMINAL}")
    op.create_index(
        'uq_remediations_open_per_node',
        'remediations',
        ['node_row_id'],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index('uq_remediations_open_per_node', table_name='remediations')

"""hosts: who manages each host; clusters: the step the controller started; check runs:
the host driver's state

`hosts.driver` names the host driver the controllers call for the host (`simulated`,
`agent`). `clusters.step_phase` / `step_started_at` / `step_error` record the bring-up step
the cluster controller started and why it failed, so it never reads the flavour's opaque
state; a step in flight at upgrade keeps going (its phase is filled in).
`nodes.flavour_state` is the flavour's opaque state of a node's membership (nodes running
at upgrade are members: an empty state). `health_check_runs.driver_state` is the opaque
state of a check the host driver runs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import clusterplane.db.types

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('driver', sa.String(length=32), nullable=False, server_default='simulated')
        )
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('step_phase', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('step_started_at', clusterplane.db.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('step_error', sa.Text(), nullable=True))
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flavour_state', sa.JSON(), nullable=True))
    with op.batch_alter_table('health_check_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('driver_state', sa.JSON(), nullable=True))
    op.execute(
        "UPDATE nodes SET flavour_state = '{}' "
        "WHERE phase = 'NODE_PHASE_RUNNING' AND deleted_at IS NULL"
    )
    op.execute(
        "UPDATE clusters SET step_phase = phase, step_started_at = updated_at "
        "WHERE step_state IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table('health_check_runs', schema=None) as batch_op:
        batch_op.drop_column('driver_state')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('flavour_state')
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.drop_column('step_error')
        batch_op.drop_column('step_started_at')
        batch_op.drop_column('step_phase')
    with op.batch_alter_table('hosts', schema=None) as batch_op:
        batch_op.drop_column('driver')

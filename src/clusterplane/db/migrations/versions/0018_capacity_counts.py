"""capacity counts: serviceable hosts and steady bookings, kept by the database

Every create checks its region's bookings against its capacity. It counted the region's
serviceable hosts by fabric and capacity pool, summed the GPUs of every started,
open-ended general booking (on-demand clusters: most of them) and listed the other
bookings by reading every live cluster of the region: O(hosts) and O(clusters) per create,
so one project's thousand clusters slowed every other project's creates (7.7 ms of SQLite
per create beside 2,100 clusters).

The database now keeps both as ledgers its triggers append to: `serviceable_host_changes`
(hosts gained or lost per region, GPU type, fabric and pool; `pool` '' for general
capacity) and `steady_booking_changes` (GPUs of steady bookings, those live, not deleting,
with no reservation times and no pool, gained or lost per region and GPU type). On an
insert or delete of a host or cluster, and on an update of a column the count depends on,
the group a row left loses it and the group it joined gains it; an update that changes
neither (a host handed out, a cluster's next phase) appends nothing. A count is the sum of
its group's rows; the capacity check, which holds its region's lock, folds a group's rows
into one once there are many (`services/capacity/capacity_ledger.py`). Appends take no lock
another writer waits on: a counter row updated in place would be locked until its
writer's commit, in whatever order each writer reached it, and on PostgreSQL creates,
deletes and scales deadlocked on it.

Two partial indexes answer the rest from the few rows they hold: the other live bookings
(reservations, pool bookings, scheduled starts) and the reservations still to start, by
their booked fabric.

Revision ID: 0018_capacity_counts
Revises: 0017_cluster_documents
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018_capacity_counts'
down_revision = '0017_cluster_documents'
branch_labels = None
depends_on = None

SERVICEABLE = "{r}.in_fleet_file AND {r}.state IN ('available', 'allocated')"
STEADY = (
    "{r}.deleted_at IS NULL AND {r}.phase <> 'CLUSTER_PHASE_DELETING' "
    "AND {r}.reservation_end_time IS NULL AND {r}.capacity_pool_id IS NULL "
    "AND {r}.reservation_start_time IS NULL"
)
UNSTEADY_INDEX = (
    'deleted_at IS NULL AND (reservation_end_time IS NOT NULL OR capacity_pool_id IS NOT NULL '
    'OR reservation_start_time IS NOT NULL)'
)
SCHEDULED_INDEX = "phase = 'CLUSTER_PHASE_SCHEDULED' AND deleted_at IS NULL"


class Count:
    """One kept count: the table, its key columns and the source row's values for them,
    the amount a row adds, the condition for a row to count, and the source columns an
    update must change for the count to move."""

    def __init__(
        self,
        name: str,
        source: str,
        key: dict[str, str],
        amount: str,
        counts: str,
        columns: list[str],
    ) -> None:
        self.name, self.source, self.key = name, source, key
        self.amount, self.counts, self.columns = amount, counts, columns

    def add(self, row: str, sign: str) -> str:
        """An append of `row`'s amount, gained (sign '+') or lost (sign '-')."""
        values = ', '.join(v.format(r=row) for v in self.key.values())
        return (
            f"INSERT INTO {self.name} ({', '.join(self.key)}, {self.amount_column}) "
            f'VALUES ({values}, {sign}{self.amount.format(r=row)});'
        )

    @property
    def amount_column(self) -> str:
        return 'hosts' if self.name == 'serviceable_host_changes' else 'gpus'

    def unchanged(self, null_safe_equal: str) -> str:
        """NEW counts where OLD did, with the same key and amount."""
        same = [
            null_safe_equal.format(a=v.format(r='NEW'), b=v.format(r='OLD'))
            for v in [*self.key.values(), self.amount]
        ]
        return f"({self.counts.format(r='NEW')} AND {' AND '.join(same)})"


COUNTS = [
    Count(
        'serviceable_host_changes',
        'hosts',
        {
            'region': '{r}.region',
            'gpu_type': '{r}.gpu_type',
            'fabric': '{r}.fabric',
            'pool': "coalesce({r}.capacity_pool_id, '')",
        },
        '1',
        SERVICEABLE,
        ['region', 'gpu_type', 'fabric', 'capacity_pool_id', 'in_fleet_file', 'state'],
    ),
    Count(
        'steady_booking_changes',
        'clusters',
        {'region': '{r}.region', 'gpu_type': '{r}.gpu_type'},
        '{r}.num_gpus',
        STEADY,
        [
            'region', 'gpu_type', 'num_gpus', 'deleted_at', 'phase', 'reservation_end_time',
            'capacity_pool_id', 'reservation_start_time',
        ],
    ),
]


def _triggers(count: Count, null_safe_equal: str) -> list[tuple[str, str, str, str]]:
    """(name suffix, event, WHEN condition, 'gain' or 'loss') of the four triggers of a
    count: the group a row joins gains it, the group it leaves loses it."""
    unchanged = count.unchanged(null_safe_equal)
    old, new = count.counts.format(r='OLD'), count.counts.format(r='NEW')
    update = f"UPDATE OF {', '.join(count.columns)}"
    return [
        ('insert', 'INSERT', new, 'gain'),
        ('delete', 'DELETE', old, 'loss'),
        ('leave', update, f'{old} AND NOT {unchanged}', 'loss'),
        ('join', update, f'{new} AND NOT ({old} AND {unchanged})', 'gain'),
    ]


CHANGE = {'gain': ('NEW', '+'), 'loss': ('OLD', '-')}


def _sqlite_triggers(count: Count) -> list[str]:
    return [
        f'CREATE TRIGGER cp_{count.name}_{suffix} AFTER {event} ON {count.source} '
        f'WHEN {when} BEGIN {count.add(*CHANGE[change])} END'
        for suffix, event, when, change in _triggers(count, '{a} IS {b}')
    ]


def _postgresql_triggers(count: Count) -> list[str]:
    # With their WHEN, as on SQLite: an update that moves no count (a host handed out, a
    # cluster's next phase) calls no function at all.
    functions = [
        f'CREATE FUNCTION cp_{count.name}_{change}() RETURNS trigger LANGUAGE plpgsql AS '
        f'$$ BEGIN {count.add(*CHANGE[change])} RETURN NULL; END $$'
        for change in CHANGE
    ]
    return functions + [
        f'CREATE TRIGGER cp_{count.name}_{suffix} AFTER {event} ON {count.source} '
        f'FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION cp_{count.name}_{change}()'
        for suffix, event, when, change in _triggers(count, '{a} IS NOT DISTINCT FROM {b}')
    ]


def upgrade() -> None:
    op.create_table(
        'serviceable_host_changes',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('region', sa.String(64), nullable=False),
        sa.Column('gpu_type', sa.String(32), nullable=False),
        sa.Column('fabric', sa.String(64), nullable=False),
        sa.Column('pool', sa.String(64), nullable=False),
        sa.Column('hosts', sa.Integer(), nullable=False),
    )
    op.create_index(
        'ix_serviceable_host_changes_group',
        'serviceable_host_changes',
        ['region', 'gpu_type', 'fabric', 'pool', 'hosts'],
    )
    op.create_table(
        'steady_booking_changes',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('region', sa.String(64), nullable=False),
        sa.Column('gpu_type', sa.String(32), nullable=False),
        sa.Column('gpus', sa.Integer(), nullable=False),
    )
    op.create_index(
        'ix_steady_booking_changes_group',
        'steady_booking_changes',
        ['region', 'gpu_type', 'gpus'],
    )
    op.create_index(
        'ix_clusters_unsteady',
        'clusters',
        ['region', 'gpu_type'],
        sqlite_where=sa.text(UNSTEADY_INDEX),
        postgresql_where=sa.text(UNSTEADY_INDEX),
    )
    op.create_index(
        'ix_clusters_scheduled_fabrics',
        'clusters',
        ['region', 'gpu_type', 'booked_fabric', 'num_gpus'],
        sqlite_where=sa.text(SCHEDULED_INDEX),
        postgresql_where=sa.text(SCHEDULED_INDEX),
    )
    op.execute(
        'INSERT INTO serviceable_host_changes (region, gpu_type, fabric, pool, hosts) '
        "SELECT region, gpu_type, fabric, coalesce(capacity_pool_id, ''), count(*) FROM hosts "
        f"WHERE {SERVICEABLE.format(r='hosts')} "
        'GROUP BY region, gpu_type, fabric, capacity_pool_id'
    )
    op.execute(
        'INSERT INTO steady_booking_changes (region, gpu_type, gpus) '
        f"SELECT region, gpu_type, sum(num_gpus) FROM clusters WHERE {STEADY.format(r='clusters')} "
        'GROUP BY region, gpu_type'
    )
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for count in COUNTS:
        for statement in _postgresql_triggers(count) if postgresql else _sqlite_triggers(count):
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for count in COUNTS:
        prefix = f'cp_{count.name}'
        for suffix in ('insert', 'delete', 'leave', 'join'):
            on = f' ON {count.source}' if postgresql else ''
            op.execute(f'DROP TRIGGER IF EXISTS {prefix}_{suffix}{on}')
        for change in CHANGE if postgresql else ():
            op.execute(f'DROP FUNCTION IF EXISTS {prefix}_{change}()')
    op.drop_index('ix_clusters_scheduled_fabrics', table_name='clusters')
    op.drop_index('ix_clusters_unsteady', table_name='clusters')
    op.drop_index('ix_steady_booking_changes_group', table_name='steady_booking_changes')
    op.drop_table('steady_booking_changes')
    op.drop_index('ix_serviceable_host_changes_group', table_name='serviceable_host_changes')
    op.drop_table('serviceable_host_changes')

"""The capacity counts the database keeps (migration 0018): a region's serviceable hosts per
GPU type, fabric and capacity pool, and the GPUs of its steady bookings per GPU type.

The database's triggers append a row to a ledger for every change (a host out of service,
a cluster created, scaled or deleting); a count is the sum of its group's rows, read from
an index that holds them. So a create's capacity check reads a few rows, not every host
and cluster of its region, and no writer waits on another for a counter row. `fold`
replaces a region's rows by one per group once there are more than `FOLD_AT`, which keeps
the read short.

Invariants:
    * A fold changes no sum. On PostgreSQL it deletes the group's rows and inserts their
      sum in one statement: rows that transactions still open append are not visible to
      it, so they are neither deleted nor summed. On SQLite the writer is alone.
    * Only a writer holding the region's lock folds its rows
      (`calendar.check_cluster_booking`), so two folds of one region never overlap.
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from clusterplane.db.prepared import Prepared, Reader
from clusterplane.db.rows import ServiceableHostChangeRow, SteadyBookingChangeRow

FOLD_AT = 64  # ledger rows of a region and GPU type beyond which the check folds them

_H = ServiceableHostChangeRow
_S = SteadyBookingChangeRow
_HOSTS: Prepared[tuple[str, str, int, int]] = Prepared(
    select(_H.fabric, _H.pool, func.sum(_H.hosts), func.count())
    .where(_H.region == bindparam("region"), _H.gpu_type == bindparam("gpu_type"))
    .group_by(_H.fabric, _H.pool),
    tuple,
)
_STEADY: Prepared[tuple[int | None, int]] = Prepared(
    select(func.sum(_S.gpus), func.count()).where(
        _S.region == bindparam("region"), _S.gpu_type == bindparam("gpu_type")
    ),
    tuple,
)


def serviceable_hosts(
    reader: Reader, region: str, gpu_type: str
) -> tuple[dict[tuple[str, str | None], int], int]:
    """Serviceable hosts per (fabric, capacity pool id or None), and the ledger rows read."""
    rows = reader.all(_HOSTS, region=region, gpu_type=gpu_type)
    hosts = {(fabric, pool or None): int(n) for fabric, pool, n, _ in rows if n}
    return hosts, sum(count for *_, count in rows)


def steady_gpus(reader: Reader, region: str, gpu_type: str) -> tuple[int, int]:
    """The GPUs of the steady bookings, and the ledger rows read."""
    ((gpus, count),) = reader.all(_STEADY, region=region, gpu_type=gpu_type)
    return int(gpus or 0), int(count)


_LEDGERS = {
    "serviceable_host_changes": ("fabric, pool", "hosts"),
    "steady_booking_changes": ("", "gpus"),
}


def fold(session: Session, region: str, gpu_type: str) -> None:
    """Replace the region's ledger rows of `gpu_type` by one per group (none for a group
    that sums to nothing). The caller holds the region's lock."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    where = "region = :region AND gpu_type = :gpu_type"
    key = {"region": region, "gpu_type": gpu_type}
    for table, (group, amount) in _LEDGERS.items():
        columns = f"region, gpu_type, {group + ', ' if group else ''}{amount}"
        grouped = f"GROUP BY {group} " if group else ""
        summed = f"{group + ', ' if group else ''}sum({amount})"
        if postgresql:
            session.execute(
                text(
                    f"WITH gone AS (DELETE FROM {table} WHERE {where} RETURNING *) "
                    f"INSERT INTO {table} ({columns}) SELECT :region, :gpu_type, {summed} "
                    f"FROM gone {grouped}HAVING sum({amount}) <> 0"
                ),
                key,
            )
            continue
        last = session.execute(text(f"SELECT max(id) FROM {table} WHERE {where}"), key).scalar()
        if last is None:
            continue
        session.execute(
            text(
                f"INSERT INTO {table} ({columns}) SELECT :region, :gpu_type, {summed} "
                f"FROM {table} WHERE {where} AND id <= :last {grouped}"
                f"HAVING sum({amount}) <> 0"
            ),
            {**key, "last": last},
        )
        session.execute(
            text(f"DELETE FROM {table} WHERE {where} AND id <= :last"), {**key, "last": last}
        )

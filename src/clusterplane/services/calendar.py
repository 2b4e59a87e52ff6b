"""The fleet's capacity calendar: what every live cluster has booked, and the check that
refuses a booking the fleet cannot honour.

A cluster books standard hosts of its region and GPU type: its capacity-pool part against
its pool's hosts, the rest against general capacity. It books them from its start (now,
or a scheduled cluster's `reservation_start_time`) until its end (`reservation_end_time`;
none for ON_DEMAND; never past its pool's end). Preemptible nodes book nothing: they are
taken back when a booking needs their hosts (`services/claims.py`).

General capacity is every serviceable host (available or allocated) of the region and
GPU type outside a live pool; a pool's hosts rejoin it when the pool ends. So a host can
only be promised once: pool hosts are never booked by other projects while the pool lives.

Callers: `services/clusters.py` after every change that books more (create, scale-up,
extension, more pool GPUs) and `services/pools.py` before a pool takes hosts. Each check
first locks the region row, so concurrent writers check one after the other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import and_, bindparam, func, not_, or_, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import CapacityPoolRow, ClusterRow, HostRow, RegionRow
from clusterplane.domain.calendar import Booking, Capacity, first_overbooking
from clusterplane.domain.enums import ClusterPhase, HostState
from clusterplane.errors import CapacityUnavailable

GPUS_PER_NODE = 8
SERVICEABLE = (HostState.AVAILABLE, HostState.ALLOCATED)


@dataclass(frozen=True)
class ClusterBooking:
    """One cluster's entry in the calendar."""

    cluster_id: str
    cluster_name: str
    project_id: str
    billing_type: str
    capacity_pool_id: str | None
    general_nodes: int
    pool_nodes: int
    starts_at: datetime
    ends_at: datetime | None


@dataclass
class Calendar:
    """The bookings and capacity of one region and GPU type."""

    region: str
    gpu_type: str
    now: datetime
    general: Capacity
    pool_hosts: dict[str, int]
    pools: dict[str, CapacityPoolRow]
    entries: list[ClusterBooking]
    # Started, open-ended general bookings summed up instead of listed in `entries`.
    held_nodes: int = 0
    # Serviceable hosts per (fabric, capacity pool), live pools or not.
    fabric_hosts: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def general_bookings(self) -> list[Booking]:
        listed = [
            Booking(e.cluster_id, e.general_nodes, e.starts_at, e.ends_at) for e in self.entries
        ]
        return [Booking("held", self.held_nodes, self.now, None), *listed]

    def pool_bookings(self, pool_id: str) -> list[Booking]:
        return [
            Booking(e.cluster_id, e.pool_nodes, e.starts_at, e.ends_at)
            for e in self.entries
            if e.capacity_pool_id == pool_id
        ]


def pool_is_live(pool: CapacityPoolRow | None, now: datetime) -> bool:
    """A live pool (active or still to come) keeps its hosts out of general capacity."""
    return pool is not None and pool.deleted_at is None and pool.ends_at > now


def live_pools(session: Session, region: str, gpu_type: str) -> dict[str, CapacityPoolRow]:
    rows = session.scalars(
        select(CapacityPoolRow).where(
            CapacityPoolRow.region == region,
            CapacityPoolRow.gpu_type == gpu_type,
            CapacityPoolRow.deleted_at.is_(None),
        )
    )
    return {p.id: p for p in rows}


def _host_counts(session: Session, region: str, gpu_type: str) -> dict[tuple[str, str | None], int]:
    """Serviceable hosts of the region and GPU type per (fabric, capacity pool)."""
    rows = session.execute(
        select(HostRow.fabric, HostRow.capacity_pool_id, func.count())
        .where(
            HostRow.region == region,
            HostRow.gpu_type == gpu_type,
            HostRow.in_fleet_file.is_(True),
            HostRow.state.in_(SERVICEABLE),
        )
        .group_by(HostRow.fabric, HostRow.capacity_pool_id)
    ).all()
    return {(fabric, pool_id): count for fabric, pool_id, count in rows}


def _capacity(
    hosts: dict[tuple[str, str | None], int], pools: dict[str, CapacityPoolRow], now: datetime
) -> tuple[Capacity, dict[str, int]]:
    base = 0
    later: defaultdict[datetime, int] = defaultdict(int)
    per_pool: defaultdict[str, int] = defaultdict(int)
    for (_, pool_id), count in hosts.items():
        pool = pools.get(pool_id) if pool_id else None
        if pool is None or not pool_is_live(pool, now):
            base += count
        else:
            per_pool[pool.id] += count
            later[pool.ends_at] += count
    return Capacity(base, tuple(sorted(later.items()))), dict(per_pool)


class _Bookable(Protocol):
    """The facts of a cluster its booking is made of (a row, or a row of those columns)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def project_id(self) -> str: ...
    @property
    def billing_type(self) -> str: ...
    @property
    def capacity_pool_id(self) -> str | None: ...
    @property
    def num_gpus(self) -> int: ...
    @property
    def num_capacity_pool_gpus(self) -> int: ...
    @property
    def reservation_start_time(self) -> datetime | None: ...
    @property
    def reservation_end_time(self) -> datetime | None: ...


def booking_of(cluster: _Bookable, pool: CapacityPoolRow | None, now: datetime) -> ClusterBooking:
    """What `cluster` (as it stands in the session, changes included) books."""
    start = cluster.reservation_start_time
    starts_at = start if start is not None and start > now else now
    ends_at = cluster.reservation_end_time
    if pool is not None:
        ends_at = pool.ends_at if ends_at is None else min(ends_at, pool.ends_at)
    total = cluster.num_gpus // GPUS_PER_NODE
    pool_nodes = min(total, cluster.num_capacity_pool_gpus // GPUS_PER_NODE) if pool else 0
    return ClusterBooking(
        cluster_id=cluster.id,
        cluster_name=cluster.name,
        project_id=cluster.project_id,
        billing_type=cluster.billing_type,
        capacity_pool_id=cluster.capacity_pool_id,
        general_nodes=total - pool_nodes,
        pool_nodes=pool_nodes,
        starts_at=starts_at,
        ends_at=ends_at,
    )


_BOOKING_COLUMNS = (
    ClusterRow.id,
    ClusterRow.name,
    ClusterRow.project_id,
    ClusterRow.billing_type,
    ClusterRow.capacity_pool_id,
    ClusterRow.num_gpus,
    ClusterRow.num_capacity_pool_gpus,
    ClusterRow.reservation_start_time,
    ClusterRow.reservation_end_time,
)


def load_calendar(
    session: Session,
    region: str,
    gpu_type: str,
    now: datetime,
    *,
    itemise: bool = True,
    keep: str | None = None,
) -> Calendar:
    """The calendar of one region and GPU type. With `itemise` False, the started,
    open-ended general bookings (on-demand clusters: most of them) are summed in SQL into
    `held_nodes` instead of listed, except `keep`'s, so a create's check does not read
    every cluster."""
    pools = live_pools(session, region, gpu_type)
    hosts = _host_counts(session, region, gpu_type)
    general, pool_hosts = _capacity(hosts, pools, now)
    live = (
        ClusterRow.region == region,
        ClusterRow.gpu_type == gpu_type,
        ClusterRow.deleted_at.is_(None),
        ClusterRow.phase != ClusterPhase.DELETING,
    )
    steady = and_(
        ClusterRow.reservation_end_time.is_(None),
        ClusterRow.capacity_pool_id.is_(None),
        or_(
            ClusterRow.reservation_start_time.is_(None),
            ClusterRow.reservation_start_time <= now,
        ),
        ClusterRow.id != (keep or ""),
    )
    held = 0
    query = select(*_BOOKING_COLUMNS).where(*live)
    if not itemise:
        total = session.scalar(select(func.sum(ClusterRow.num_gpus)).where(*live, steady))
        held = int(total or 0) // GPUS_PER_NODE
        query = query.where(not_(steady))
    rows = session.execute(query.order_by(ClusterRow.created_at, ClusterRow.id)).all()
    entries = [
        booking_of(c, pools.get(c.capacity_pool_id) if c.capacity_pool_id else None, now)
        for c in rows
    ]
    return Calendar(region, gpu_type, now, general, pool_hosts, pools, entries, held, hosts)


def _largest_fabric(calendar: Calendar, mine: ClusterBooking) -> int:
    """Serviceable hosts of the widest fabric this cluster may use (general hosts and its
    own pool's): unless the region's policy lets clusters span fabrics, no booking can be
    wider."""
    per_fabric: defaultdict[str, int] = defaultdict(int)
    for (fabric, pool_id), count in calendar.fabric_hosts.items():
        pool = calendar.pools.get(pool_id) if pool_id else None
        if (
            pool_id is None
            or pool is None
            or pool_id == mine.capacity_pool_id
            or not pool_is_live(pool, calendar.now)
        ):
            per_fabric[fabric] += count
    return max(per_fabric.values(), default=0)


_LOCK_REGION = select(RegionRow.name).where(RegionRow.name == bindparam("region")).with_for_update()


def lock_region(session: Session, region: str) -> None:
    """Serialise calendar checks of one region: a row lock on PostgreSQL. SQLite writers
    are serialised already (one at a time, BEGIN IMMEDIATE), so there it does nothing."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(_LOCK_REGION, {"region": region})


def _when(at: datetime | None) -> str:
    return "open-ended" if at is None else at.isoformat()


def check_cluster_booking(session: Session, cluster: ClusterRow, now: datetime) -> None:
    """Refuse (CapacityUnavailable, 409) unless the calendar with `cluster` as it now
    stands in the session can be honoured. Nothing is written here."""
    lock_region(session, cluster.region)
    session.flush()
    calendar = load_calendar(
        session, cluster.region, cluster.gpu_type, now, itemise=False, keep=cluster.id
    )
    mine = next((e for e in calendar.entries if e.cluster_id == cluster.id), None)
    if mine is None:
        return
    what = f"{cluster.gpu_type} in {cluster.region}"
    region = session.get(RegionRow, cluster.region)
    spans_fabrics = region is not None and region.allow_cross_fabric
    widest = 0 if spans_fabrics else _largest_fabric(calendar, mine)
    if not spans_fabrics and mine.general_nodes + mine.pool_nodes > widest:
        raise CapacityUnavailable(
            f"need {mine.general_nodes + mine.pool_nodes} node(s) of {what} in one fabric; "
            f"the largest fabric has {widest} available to this cluster",
            param="num_gpus",
        )
    over = first_overbooking(calendar.general_bookings(), calendar.general, since=now)
    if over is not None and mine.general_nodes > 0:
        raise CapacityUnavailable(
            f"need {mine.general_nodes} node(s) of {what} from {_when(mine.starts_at)} "
            f"until {_when(mine.ends_at)}; {over.capacity} available at {_when(over.when)}, "
            f"{over.demand - mine.general_nodes} of them already booked"
        )
    if mine.capacity_pool_id is None or mine.pool_nodes == 0:
        return
    pool_id = mine.capacity_pool_id
    hosts = calendar.pool_hosts.get(pool_id, 0)
    over = first_overbooking(calendar.pool_bookings(pool_id), Capacity(hosts), since=now)
    if over is not None:
        raise CapacityUnavailable(
            f"need {mine.pool_nodes} node(s) from capacity pool '{pool_id}' from "
            f"{_when(mine.starts_at)}; the pool has {hosts} host(s) available, "
            f"{over.demand - mine.pool_nodes} of them already booked at {_when(over.when)}",
            param="num_capacity_pool_gpus",
        )


def check_general_calendar(session: Session, region: str, gpu_type: str, now: datetime) -> None:
    """Refuse (409) if the general bookings of a region and GPU type no longer fit (after
    a pool took hosts out of general capacity in this session)."""
    session.flush()
    calendar = load_calendar(session, region, gpu_type, now, itemise=False)
    over = first_overbooking(calendar.general_bookings(), calendar.general, since=now)
    if over is not None:
        raise CapacityUnavailable(
            f"clusters have booked {over.demand} node(s) of {gpu_type} in {region} at "
            f"{_when(over.when)}; only {over.capacity} would stay available"
        )


def wind_down_at(session: Session, cluster: ClusterRow) -> tuple[datetime | None, str]:
    """When a cluster is wound down, and why: its reservation's end, or its capacity
    pool's end if that comes first (None: never, an on-demand cluster)."""
    end, why = cluster.reservation_end_time, "reservation"
    pool = (
        session.get(CapacityPoolRow, cluster.capacity_pool_id) if cluster.capacity_pool_id else None
    )
    if pool is not None and (end is None or pool.ends_at < end):
        end, why = pool.ends_at, f"capacity pool {pool.id}"
    return end, why

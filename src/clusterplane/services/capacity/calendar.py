"""The fleet's capacity calendar: what every live cluster has booked, and the check that
refuses a booking the fleet cannot honour.

A cluster books standard hosts of its region and GPU type: its capacity-pool part against
its pool's hosts, the rest against general capacity. It books them from its start (now,
or a scheduled cluster's `reservation_start_time`) until its end (`reservation_end_time`;
none for ON_DEMAND; never past its pool's end). Preemptible nodes book nothing: they are
taken back when a booking needs their hosts (`services/capacity/claims.py`).

Bookings are served in the order they were made (`domain/calendar.first_short`): a
reservation is owed its hosts over its window, an on-demand cluster only needs to fit now
(and over the next `notice`), and yields to reservations made before it when they start
(`services/capacity/claims.py` ends it). Unless the region lets clusters span fabrics, a
reservation is also packed into one fabric: it is checked against that fabric's hosts and
bookings, the fabric is recorded (`clusters.booked_fabric`), and its start is placed there.

General capacity is every serviceable host (available or allocated) of the region and
GPU type outside a live pool; a pool's hosts rejoin it when the pool ends. So a host can
only be promised once: pool hosts are never booked by other projects while the pool lives.

Callers: `services/clusters/clusters.py` after every change that books more (create, scale-up,
extension, more pool GPUs) and `services/capacity/pools.py` before a pool takes hosts. Each check
first locks the region row, so concurrent writers check one after the other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session

from clusterplane.db.prepared import Prepared, Reader, reader_of
from clusterplane.db.rows import (
    UNSTEADY_BOOKING,
    CapacityPoolRow,
    ClusterRow,
    HostRow,
    NodeRow,
    RegionRow,
)
from clusterplane.domain.calendar import (
    Booking,
    Capacity,
    Overbooking,
    first_overbooking,
    first_short,
)
from clusterplane.domain.enums import ClusterPhase
from clusterplane.errors import CapacityUnavailable
from clusterplane.services.capacity import capacity_ledger
from clusterplane.services.capacity.allocation import allows_cross_fabric

GPUS_PER_NODE = 8
# The booking being checked is served after every booking already made.
LAST = 2**62


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
    booked_seq: int | None = None
    booked_fabric: str | None = None
    # Its general nodes per fabric (None: not in a fabric yet); see `_split_by_fabric`.
    fabric_nodes: dict[str | None, int] = field(default_factory=dict)

    def booking(self, nodes: int | None = None, *, last: bool = False) -> Booking:
        nodes = self.general_nodes if nodes is None else nodes
        made = LAST if last else self.booked_seq
        return Booking(self.cluster_id, nodes, self.starts_at, self.ends_at, made)


@dataclass
class Calendar:
    """The bookings and capacity of one region and GPU type."""

    region: str
    gpu_type: str
    now: datetime
    general: Capacity
    pool_hosts: dict[str, int]
    pools: dict[str, PoolWindow]
    entries: list[ClusterBooking]
    # Started, open-ended general bookings summed up instead of listed in `entries`.
    held_nodes: int = 0
    # General capacity per fabric (only when the entries are itemised).
    fabrics: dict[str, Capacity] = field(default_factory=dict)
    # Serviceable hosts now, per (fabric, capacity pool id or None).
    serviceable: dict[tuple[str, str | None], int] = field(default_factory=dict)
    # Rows of the capacity ledgers the counts were summed from (`capacity_ledger`).
    ledger_rows: int = 0

    def general_bookings(self, last: str | None = None) -> list[Booking]:
        """Every general booking; `last`'s is served after all the others."""
        listed = [e.booking(last=e.cluster_id == last) for e in self.entries]
        return [Booking("held", self.held_nodes, self.now, None), *listed]

    def fabric_bookings(self, fabric: str, last: str | None = None) -> list[Booking]:
        return [
            e.booking(e.fabric_nodes.get(fabric, 0), last=e.cluster_id == last)
            for e in self.entries
        ]

    def pool_bookings(self, pool_id: str) -> list[Booking]:
        return [
            Booking(e.cluster_id, e.pool_nodes, e.starts_at, e.ends_at)
            for e in self.entries
            if e.capacity_pool_id == pool_id
        ]


class _Window(Protocol):
    """A capacity pool's window (a row, or a `PoolWindow`)."""

    @property
    def ends_at(self) -> datetime: ...
    @property
    def deleted_at(self) -> datetime | None: ...


class PoolWindow(NamedTuple):
    """What the calendar knows of a capacity pool."""

    id: str
    starts_at: datetime
    ends_at: datetime
    deleted_at: datetime | None


def pool_is_live(pool: _Window | None, now: datetime) -> bool:
    """A live pool (active or still to come) keeps its hosts out of general capacity."""
    return pool is not None and pool.deleted_at is None and pool.ends_at > now


_LIVE_POOLS: Prepared[PoolWindow] = Prepared(
    select(*(getattr(CapacityPoolRow, name) for name in PoolWindow._fields)).where(
        CapacityPoolRow.region == bindparam("region"),
        CapacityPoolRow.gpu_type == bindparam("gpu_type"),
        CapacityPoolRow.deleted_at.is_(None),
    ),
    PoolWindow,
)


def live_pools(reader: Reader, region: str, gpu_type: str) -> dict[str, PoolWindow]:
    """The region's pools of `gpu_type` not deleted (those whose window has passed too)."""
    return {p.id: p for p in reader.all(_LIVE_POOLS, region=region, gpu_type=gpu_type)}


@dataclass
class _Steps:
    """A capacity being counted up: hosts now, and hosts that join later."""

    base: int = 0
    later: defaultdict[datetime, int] = field(default_factory=lambda: defaultdict(int))

    def capacity(self) -> Capacity:
        return Capacity(self.base, tuple(sorted(self.later.items())))


def _capacity(
    counts: dict[tuple[str, str | None], int], pools: dict[str, PoolWindow], now: datetime
) -> tuple[Capacity, dict[str, int], dict[str, Capacity]]:
    """General capacity (in all, and per fabric), and the hosts of each live pool."""
    total = _Steps()
    per_fabric: defaultdict[str, _Steps] = defaultdict(_Steps)
    per_pool: defaultdict[str, int] = defaultdict(int)
    for (fabric, pool_id), count in counts.items():
        pool = pools.get(pool_id) if pool_id else None
        if pool is None or not pool_is_live(pool, now):
            total.base += count
            per_fabric[fabric].base += count
        else:
            per_pool[pool.id] += count
            total.later[pool.ends_at] += count
            per_fabric[fabric].later[pool.ends_at] += count
    fabrics = {name: steps.capacity() for name, steps in per_fabric.items()}
    return total.capacity(), dict(per_pool), fabrics


def _held_by_fabric(
    session: Session, region: str, gpu_type: str, pools: dict[str, PoolWindow], now: datetime
) -> dict[str, dict[str, int]]:
    """Per cluster: the general hosts its staying standard workers hold, by fabric."""
    rows = session.execute(
        select(HostRow.cluster_id, HostRow.fabric, HostRow.capacity_pool_id, func.count())
        .join(NodeRow, NodeRow.id == HostRow.node_row_id)
        .where(
            HostRow.region == region,
            HostRow.gpu_type == gpu_type,
            NodeRow.preemptible.is_(False),
            NodeRow.marked_for_deletion.is_(False),
            NodeRow.deleted_at.is_(None),
        )
        .group_by(HostRow.cluster_id, HostRow.fabric, HostRow.capacity_pool_id)
    ).all()
    held: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for cluster_id, fabric, pool_id, count in rows:
        if cluster_id is None or (pool_id and pool_is_live(pools.get(pool_id), now)):
            continue
        held[cluster_id][fabric] = held[cluster_id].get(fabric, 0) + int(count)
    return dict(held)


def _split_by_fabric(entry: ClusterBooking, held: dict[str, int]) -> dict[str | None, int]:
    """Where a booking's general nodes are: the hosts it holds, and the rest in its booked
    fabric (or the fabric it holds most in; None when it has neither)."""
    split: dict[str | None, int] = {fabric: n for fabric, n in held.items()}
    rest = max(0, entry.general_nodes - sum(held.values()))
    if rest:
        home = entry.booked_fabric or max(held, key=lambda f: held[f], default=None)
        split[home] = split.get(home, 0) + rest
    return split


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
    @property
    def booked_seq(self) -> int | None: ...
    @property
    def booked_fabric(self) -> str | None: ...


def booking_of(cluster: _Bookable, pool: _Window | None, now: datetime) -> ClusterBooking:
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
        booked_seq=cluster.booked_seq,
        booked_fabric=cluster.booked_fabric,
    )


class _BookingColumns(NamedTuple):
    """The columns of a cluster its booking is made of."""

    id: str
    name: str
    project_id: str
    billing_type: str
    capacity_pool_id: str | None
    num_gpus: int
    num_capacity_pool_gpus: int
    reservation_start_time: datetime | None
    reservation_end_time: datetime | None
    booked_seq: int | None
    booked_fabric: str | None


_LIVE = (
    ClusterRow.region == bindparam("region"),
    ClusterRow.gpu_type == bindparam("gpu_type"),
    ClusterRow.deleted_at.is_(None),
    ClusterRow.phase != ClusterPhase.DELETING,
)
_BOOKINGS = select(*(getattr(ClusterRow, name) for name in _BookingColumns._fields))
_ORDER = (ClusterRow.created_at, ClusterRow.id)
_ALL_BOOKINGS = Prepared(_BOOKINGS.where(*_LIVE).order_by(*_ORDER), _BookingColumns)
# Every live booking but the steady ones, from the few rows of `ix_clusters_unsteady`.
_UNSTEADY_BOOKINGS = Prepared(
    _BOOKINGS.where(*_LIVE, text(UNSTEADY_BOOKING)).order_by(*_ORDER), _BookingColumns
)
_LIVE_BOOKING = Prepared(
    _BOOKINGS.where(
        ClusterRow.id == bindparam("id"),
        ClusterRow.deleted_at.is_(None),
        ClusterRow.phase != ClusterPhase.DELETING,
    ),
    _BookingColumns,
)


def _is_steady(booking: _BookingColumns) -> bool:
    """Counted in the steady-bookings ledger (`capacity_ledger.steady_gpus`): no
    reservation times and no pool (of a live booking)."""
    return (
        booking.reservation_start_time is None
        and booking.reservation_end_time is None
        and booking.capacity_pool_id is None
    )


def _bookings_beside_steady(
    reader: Reader, region: str, gpu_type: str, keep: str | None
) -> tuple[int, list[_BookingColumns], int]:
    """The GPUs of the region's steady bookings but `keep`'s, as the database keeps them
    summed, every other live booking (`keep`'s included), listed, and the ledger rows
    read: index reads of a few rows, however many clusters the region has."""
    steady, ledger_rows = capacity_ledger.steady_gpus(reader, region, gpu_type)
    rows = reader.all(_UNSTEADY_BOOKINGS, region=region, gpu_type=gpu_type)
    kept = reader.all(_LIVE_BOOKING, id=keep) if keep else []
    for booking in kept:
        if _is_steady(booking):
            steady -= booking.num_gpus
            rows.append(booking)
    return steady, rows, ledger_rows


def load_calendar(
    session: Session,
    region: str,
    gpu_type: str,
    now: datetime,
    *,
    itemise: bool = True,
    keep: str | None = None,
) -> Calendar:
    """The calendar of one region and GPU type. With `itemise` False, the steady bookings
    (on-demand clusters: most of them) but `keep`'s are taken as the database keeps them
    summed, into `held_nodes`, instead of listed, so a create's check does not read every
    cluster. Itemised entries are also split by fabric."""
    reader = reader_of(session)
    pools = live_pools(reader, region, gpu_type)
    serviceable, ledger_rows = capacity_ledger.serviceable_hosts(reader, region, gpu_type)
    general, pool_hosts, fabrics = _capacity(serviceable, pools, now)
    held = 0
    if itemise:
        rows = reader.all(_ALL_BOOKINGS, region=region, gpu_type=gpu_type)
    else:
        steady_gpus, rows, steady_rows = _bookings_beside_steady(reader, region, gpu_type, keep)
        held = steady_gpus // GPUS_PER_NODE
        ledger_rows += steady_rows
    entries = [
        booking_of(c, pools.get(c.capacity_pool_id) if c.capacity_pool_id else None, now)
        for c in rows
    ]
    if itemise:
        by_fabric = _held_by_fabric(session, region, gpu_type, pools, now)
        entries = [
            replace(e, fabric_nodes=_split_by_fabric(e, by_fabric.get(e.cluster_id, {})))
            for e in entries
        ]
    return Calendar(
        region,
        gpu_type,
        now,
        general,
        pool_hosts,
        pools,
        entries,
        held,
        fabrics,
        serviceable,
        ledger_rows,
    )


def _largest_fabric(calendar: Calendar, mine: ClusterBooking) -> int:
    """Serviceable hosts of the widest fabric this cluster may use (general hosts and its
    own pool's): unless the region's policy lets clusters span fabrics, no booking can be
    wider."""
    per_fabric: defaultdict[str, int] = defaultdict(int)
    for (fabric, pool_id), count in calendar.serviceable.items():
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


def check_cluster_booking(
    session: Session, cluster: ClusterRow, now: datetime, *, notice: timedelta | None = None
) -> None:
    """Refuse (CapacityUnavailable, 409) unless the calendar with `cluster` as it now
    stands in the session can be honoured, its booking served after every other one.

    An open-ended booking (an on-demand cluster) must fit from now until `notice` later
    (None: for ever, beside every reservation); a windowed one over its whole window, in
    one fabric unless the region lets clusters span fabrics: the fabric is recorded in
    `cluster.booked_fabric`."""
    lock_region(session, cluster.region)
    session.flush()
    open_ended = cluster.reservation_end_time is None and cluster.capacity_pool_id is None
    calendar = load_calendar(
        session, cluster.region, cluster.gpu_type, now, itemise=not open_ended, keep=cluster.id
    )
    if calendar.ledger_rows > capacity_ledger.FOLD_AT:
        capacity_ledger.fold(session, cluster.region, cluster.gpu_type)
    mine = next((e for e in calendar.entries if e.cluster_id == cluster.id), None)
    if mine is None:
        return
    what = f"{cluster.gpu_type} in {cluster.region}"
    spans_fabrics = allows_cross_fabric(session, cluster.region)
    widest = 0 if spans_fabrics else _largest_fabric(calendar, mine)
    if not spans_fabrics and mine.general_nodes + mine.pool_nodes > widest:
        raise CapacityUnavailable(
            f"need {mine.general_nodes + mine.pool_nodes} node(s) of {what} in one fabric; "
            f"the largest fabric has {widest} available to this cluster",
            param="num_gpus",
        )
    if mine.general_nodes > 0:
        until = now + notice if mine.ends_at is None and notice is not None else None
        over = first_short(
            calendar.general_bookings(last=mine.cluster_id),
            calendar.general,
            since=now,
            checked={mine.cluster_id},
            until=until,
        )
        if over is not None:
            raise _short(mine, what, over)
        if not spans_fabrics and mine.ends_at is not None:
            cluster.booked_fabric = _pack_in_fabric(calendar, mine, what)
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


def _short(
    mine: ClusterBooking, what: str, over: Overbooking, where: str = ""
) -> CapacityUnavailable:
    return CapacityUnavailable(
        f"need {mine.general_nodes} node(s) of {what}{where} from {_when(mine.starts_at)} "
        f"until {_when(mine.ends_at)}; {over.capacity} available at {_when(over.when)}, "
        f"{over.demand - mine.general_nodes} of them already booked"
    )


def _fits_in(calendar: Calendar, mine: ClusterBooking, fabric: str) -> Overbooking | None:
    """Where `mine` (all its general nodes in `fabric`) is first short there, if anywhere."""
    bookings = [
        *(b for b in calendar.fabric_bookings(fabric) if b.key != mine.cluster_id),
        mine.booking(last=True),
    ]
    capacity = calendar.fabrics.get(fabric, Capacity(0))
    return first_short(bookings, capacity, since=calendar.now, checked={mine.cluster_id})


def _held_fabrics_short(calendar: Calendar, mine: ClusterBooking) -> Overbooking | None:
    """A started booking stays in the fabrics it holds hosts in: is it short in one?"""
    for fabric, nodes in mine.fabric_nodes.items():
        if fabric is None or nodes == 0:
            continue
        bookings = calendar.fabric_bookings(fabric, last=mine.cluster_id)
        capacity = calendar.fabrics.get(fabric, Capacity(0))
        over = first_short(bookings, capacity, since=calendar.now, checked={mine.cluster_id})
        if over is not None:
            return over
    return None


def _pack_in_fabric(calendar: Calendar, mine: ClusterBooking, what: str) -> str | None:
    """The fabric a windowed booking is packed into: where it holds hosts already, else
    its booked fabric if it still fits there, else the fabric with the fewest hosts at its
    start that fits it. 409 when none does."""
    held = [f for f, n in mine.fabric_nodes.items() if f is not None and n > 0]
    if held and mine.starts_at <= calendar.now:
        over = _held_fabrics_short(calendar, mine)
        if over is not None:
            raise _short(mine, what, over, f" in fabric {', '.join(sorted(held))}")
        return held[0] if len(held) == 1 else mine.booked_fabric
    order = sorted(calendar.fabrics, key=lambda f: (calendar.fabrics[f].at(mine.starts_at), f))
    if mine.booked_fabric in calendar.fabrics:
        order.remove(mine.booked_fabric)
        order.insert(0, mine.booked_fabric)
    for fabric in order:
        if _fits_in(calendar, mine, fabric) is None:
            return fabric
    raise CapacityUnavailable(
        f"need {mine.general_nodes} node(s) of {what} in one fabric from "
        f"{_when(mine.starts_at)} until {_when(mine.ends_at)}; no fabric has them free "
        "then beside the bookings already made"
    )


def check_general_calendar(session: Session, region: str, gpu_type: str, now: datetime) -> None:
    """Refuse (409) if a reservation of a region and GPU type would no longer be served, in
    all or in its fabric (after a pool took hosts out of general capacity in this session).
    On-demand clusters are not owed future hosts, so they do not stop a pool."""
    session.flush()
    calendar = load_calendar(session, region, gpu_type, now)
    windowed = {e.cluster_id for e in calendar.entries if e.ends_at is not None}
    groups = [("", calendar.general_bookings(), calendar.general)]
    if not allows_cross_fabric(session, region):
        groups += [
            (f" in fabric {f}", calendar.fabric_bookings(f), capacity)
            for f, capacity in sorted(calendar.fabrics.items())
        ]
    for where, bookings, capacity in groups:
        over = first_short(bookings, capacity, since=now, checked=windowed)
        if over is not None:
            raise CapacityUnavailable(
                f"clusters have booked {over.demand} node(s) of {gpu_type} in {region}{where} "
                f"at {_when(over.when)}; only {over.capacity} would stay available"
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

"""The capacity calendar: can a set of bookings be honoured by a group of hosts over time?

Pure. A `Booking` holds `nodes` hosts from `starts_at` until `ends_at` (None: until it is
released, as an on-demand cluster is). `Capacity` is how many hosts the group has, a step
function that only grows (pool hosts rejoin general capacity when their pool ends). A
calendar is honourable when, at every instant from `since` on, the bookings active then
need no more hosts than the capacity then. Demand only rises where a booking starts and
capacity never falls, so checking `since` and every later start is enough.

Who calls it: `services/capacity.py`, at every create, scale-up, extension and pool change
that adds a booking, so a booking that cannot be honoured is refused before it is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Booking", "Capacity", "Overbooking", "demand_at", "first_overbooking", "peak"]


@dataclass(frozen=True, slots=True)
class Booking:
    """`nodes` hosts held over [starts_at, ends_at); `ends_at` None: until released."""

    key: str
    nodes: int
    starts_at: datetime
    ends_at: datetime | None

    def active_at(self, when: datetime) -> bool:
        return self.starts_at <= when and (self.ends_at is None or when < self.ends_at)


@dataclass(frozen=True, slots=True)
class Capacity:
    """`base` hosts now, plus `additions`: (from when, how many more)."""

    base: int
    additions: tuple[tuple[datetime, int], ...] = field(default=())

    def at(self, when: datetime) -> int:
        return self.base + sum(n for start, n in self.additions if start <= when)


@dataclass(frozen=True, slots=True)
class Overbooking:
    """The first instant the bookings need more hosts than there are."""

    when: datetime
    demand: int
    capacity: int


def demand_at(bookings: Iterable[Booking], when: datetime) -> int:
    return sum(b.nodes for b in bookings if b.active_at(when))


def _check_points(bookings: Sequence[Booking], since: datetime) -> list[datetime]:
    return sorted({since} | {b.starts_at for b in bookings if b.starts_at > since})


def first_overbooking(
    bookings: Iterable[Booking], capacity: Capacity, *, since: datetime
) -> Overbooking | None:
    """None if every instant from `since` on is honourable, else the first that is not.

    A booking that started before `since` counts as active from `since`.
    """
    clipped = [
        Booking(b.key, b.nodes, max(b.starts_at, since), b.ends_at)
        for b in bookings
        if b.nodes > 0 and (b.ends_at is None or b.ends_at > since)
    ]
    for when in _check_points(clipped, since):
        need, have = demand_at(clipped, when), capacity.at(when)
        if need > have:
            return Overbooking(when=when, demand=need, capacity=have)
    return None


def peak(bookings: Iterable[Booking], *, start: datetime, end: datetime | None) -> int:
    """The most hosts the bookings hold at once over [start, end) (end None: ever after)."""
    inside = [
        b
        for b in bookings
        if b.nodes > 0
        and (b.ends_at is None or b.ends_at > start)
        and (end is None or b.starts_at < end)
    ]
    points = {start} | {b.starts_at for b in inside if b.starts_at > start}
    return max((demand_at(inside, when) for when in points), default=0)

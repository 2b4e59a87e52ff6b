"""The capacity calendar: can a set of bookings be honoured by a group of hosts over time?

Pure. A `Booking` holds `nodes` hosts from `starts_at` until `ends_at` (None: until it is
released, as an on-demand cluster is). `Capacity` is how many hosts the group has, a step
function that only grows (pool hosts rejoin general capacity when their pool ends). Demand
only rises where a booking starts and capacity never falls, so checking `since` and every
later start is enough.

Two readings of a calendar:

- `first_overbooking`: the first instant the bookings active then need more hosts than
  there are, every booking held in full (the calendar view's "peak", and plain checks).
- `first_short`: bookings are served in the order they were made (`order`). A booking
  with a window (reserved, scheduled) is always owed its hosts; an open-ended one (an
  on-demand cluster) only holds hosts that no earlier windowed booking needs: where it no
  longer fits it yields (its cluster is ended before that booking starts) and is gone from
  then on. So a far-future booking holds capacity only over its own window, and on-demand
  clusters may use the hosts until it starts.

Who calls it: `services/capacity/calendar.py`, at every create, scale-up, extension and pool change
that adds a booking, so a booking that cannot be honoured is refused before it is made.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "Booking",
    "Capacity",
    "Overbooking",
    "demand_at",
    "first_overbooking",
    "first_short",
    "peak",
]


@dataclass(frozen=True, slots=True)
class Booking:
    """`nodes` hosts held over [starts_at, ends_at); `ends_at` None: until released.
    `order` is when it was made, for `first_short` (None: before any other)."""

    key: str
    nodes: int
    starts_at: datetime
    ends_at: datetime | None
    order: int | None = None

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


def _clip(bookings: Iterable[Booking], since: datetime) -> list[Booking]:
    return [
        Booking(b.key, b.nodes, max(b.starts_at, since), b.ends_at, b.order)
        for b in bookings
        if b.nodes > 0 and (b.ends_at is None or b.ends_at > since)
    ]


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
    clipped = _clip(bookings, since)
    for when in _check_points(clipped, since):
        need, have = demand_at(clipped, when), capacity.at(when)
        if need > have:
            return Overbooking(when=when, demand=need, capacity=have)
    return None


def _in_booking_order(booking: Booking) -> tuple[int, int, str]:
    made = booking.order
    return (made is not None, made or 0, booking.key)


def first_short(
    bookings: Iterable[Booking],
    capacity: Capacity,
    *,
    since: datetime,
    checked: Collection[str],
    until: datetime | None = None,
) -> Overbooking | None:
    """The first instant from `since` (until `until`, if given) at which a booking of
    `checked` does not get its hosts when bookings are served in the order they were made
    and open-ended ones yield to earlier windowed ones (see the module docstring); None if
    every booking of `checked` is served. A booking of `checked` never yields."""
    clipped = sorted(_clip(bookings, since), key=_in_booking_order)
    yielded: set[str] = set()
    for when in _check_points(clipped, since):
        if until is not None and when > until:
            break
        left = capacity.at(when)
        for b in clipped:
            if b.key in yielded or not b.active_at(when):
                continue
            if b.nodes <= left:
                left -= b.nodes
            elif b.key in checked:
                return Overbooking(
                    when=when, demand=capacity.at(when) - left + b.nodes, capacity=capacity.at(when)
                )
            elif b.ends_at is None:
                yielded.add(b.key)
            else:
                left = 0  # an earlier booking short of hosts keeps what is left
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

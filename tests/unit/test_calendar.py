"""The pure capacity calendar: when a set of bookings fits a growing capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clusterplane.domain.calendar import Booking, Capacity, first_overbooking, first_short, peak

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def booking(nodes: int, start: float, end: float | None) -> Booking:
    return Booking(f"b{nodes}-{start}", nodes, at(start), None if end is None else at(end))


def test_bookings_that_never_overlap_fit_even_when_each_uses_everything():
    bookings = [booking(4, 0, 2), booking(4, 2, 4), booking(4, 4, None)]
    assert first_overbooking(bookings, Capacity(4), since=T0) is None


def test_the_first_instant_of_an_overlap_beyond_capacity_is_reported():
    bookings = [booking(3, 0, 5), booking(2, 3, 6)]
    over = first_overbooking(bookings, Capacity(4), since=T0)
    assert over is not None and (over.when, over.demand, over.capacity) == (at(3), 5, 4)


def test_an_open_ended_booking_collides_with_every_later_window():
    bookings = [booking(3, 0, None), booking(2, 100, 101)]
    assert first_overbooking(bookings, Capacity(4), since=T0) is not None


def test_hosts_that_join_later_only_count_from_then_on():
    grows = Capacity(2, ((at(10), 2),))
    assert first_overbooking([booking(4, 10, 12)], grows, since=T0) is None
    too_early = first_overbooking([booking(4, 9, 12)], grows, since=T0)
    assert too_early is not None and too_early.when == at(9)


def test_bookings_that_ended_before_now_are_ignored_and_running_ones_count_from_now():
    bookings = [booking(4, -5, -1), booking(3, -5, 2), booking(1, 0, 3)]
    assert first_overbooking(bookings, Capacity(4), since=T0) is None
    assert first_overbooking([*bookings, booking(1, 1, 2)], Capacity(4), since=T0) is not None


def test_peak_is_the_most_nodes_held_at_once_inside_the_window():
    bookings = [booking(2, 0, 4), booking(3, 2, 6), booking(5, 6, 8)]
    assert peak(bookings, start=at(0), end=at(6)) == 5
    assert peak(bookings, start=at(5), end=None) == 5
    assert peak(bookings, start=at(8), end=at(9)) == 0


def ordered(nodes: int, start: float, end: float | None, order: int) -> Booking:
    return Booking(f"o{order}", nodes, at(start), None if end is None else at(end), order)


def test_a_far_future_window_does_not_stop_an_open_ended_booking_that_fits_until_then():
    window, mine = ordered(4, 100, 101, 1), ordered(4, 0, None, 2)
    assert first_overbooking([window, mine], Capacity(4), since=T0) is not None
    assert first_short([window, mine], Capacity(4), since=T0, checked={"o2"}, until=at(1)) is None
    late = first_short([window, mine], Capacity(4), since=T0, checked={"o2"})
    assert late is not None and late.when == at(100), "it would have to yield then"


def test_an_open_ended_booking_made_after_a_window_yields_to_it_and_is_gone_after():
    bookings = [ordered(4, 10, 12, 1), ordered(3, 0, None, 2), ordered(4, 20, 22, 3)]
    assert first_short(bookings, Capacity(4), since=T0, checked={"o1", "o3"}) is None


def test_an_open_ended_booking_made_before_a_window_never_yields_to_it():
    bookings = [ordered(3, 0, None, 1), ordered(2, 10, 12, 2)]
    short = first_short(bookings, Capacity(4), since=T0, checked={"o2"})
    assert short is not None and (short.when, short.demand, short.capacity) == (at(10), 5, 4)


def test_a_booking_short_of_hosts_keeps_what_is_left_from_later_ones():
    bookings = [ordered(5, 10, 12, 1), ordered(1, 10, 12, 2)]
    short = first_short(bookings, Capacity(4), since=T0, checked={"o2"})
    assert short is not None and short.when == at(10)

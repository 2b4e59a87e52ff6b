"""The placement cache: reservations stay out of every index until their transaction ends."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from clusterplane.domain.placement import FreeHost, PlacementIndex
from clusterplane.errors import CapacityUnavailable
from clusterplane.services.capacity.placement_cache import PlacementCache, Snapshot

KEY = ("region", "H100_SXM")
HOSTS = [FreeHost(f"h{i}", f"h{i}", "f1", "b1", "r1") for i in range(4)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _session() -> Session:
    session = Session(create_engine("sqlite://"))
    session.begin()
    session.connection()
    return session


def _choose(count: int) -> Callable[[PlacementIndex], tuple[str, ...]]:
    return lambda index: index.choose(count)


def _load(hosts: list[FreeHost]) -> tuple[Callable[[bool], Snapshot], list[bool]]:
    loads: list[bool] = []

    def load(full: bool) -> Snapshot:
        loads.append(full)
        return Snapshot(PlacementIndex(hosts))

    return load, loads


def test_two_open_transactions_never_get_the_same_host_even_across_a_rebuild():
    clock = Clock()
    cache = PlacementCache(ttl_seconds=5, monotonic=clock)
    load, loads = _load(HOSTS)
    first, second = _session(), _session()
    a = cache.reserve(first, KEY, _choose(2), load)
    clock.now = 10  # expired: the next decision rebuilds from the "database"
    b = cache.reserve(second, KEY, _choose(2), load)
    assert loads == [False, False]
    assert not set(a) & set(b) and len(a + b) == 4


def test_a_rolled_back_reservation_is_offered_again_and_a_committed_one_is_not():
    cache = PlacementCache(monotonic=Clock())
    load, _ = _load(HOSTS)
    session = _session()
    taken = cache.reserve(session, KEY, _choose(4), load)
    session.rollback()
    session.begin()
    assert cache.reserve(session, KEY, _choose(4), load) == taken
    session.commit()
    other = _session()
    # The index no longer offers them; the refusal is re-checked on a rebuilt index,
    # which (as the database would after the commit) no longer lists them either.
    load_none, loads = _load([])
    try:
        cache.reserve(other, KEY, _choose(1), load_none)
    except CapacityUnavailable as refused:
        assert refused.code == "insufficient_capacity"
    else:
        raise AssertionError("a committed reservation was offered again")
    assert loads == [True]


def test_a_no_fit_from_a_kept_index_is_checked_on_a_fresh_one():
    cache = PlacementCache(monotonic=Clock())
    load, loads = _load(HOSTS[:1])
    cache.reserve(_session(), KEY, _choose(1), load)
    more, more_loads = _load(HOSTS[1:])  # hosts freed elsewhere since the index was built
    assert cache.reserve(_session(), KEY, _choose(2), more) == ("h1", "h2")
    assert loads == [False] and more_loads == [True]


def test_a_failed_claim_forgets_the_reservation_and_the_index():
    cache = PlacementCache(monotonic=Clock())
    load, loads = _load(HOSTS)
    session = _session()
    cache.reserve(session, KEY, _choose(4), load)
    cache.forget(session, KEY)
    assert cache.reserve(session, KEY, _choose(4), load) == ("h0", "h1", "h2", "h3")
    assert loads == [False, False]

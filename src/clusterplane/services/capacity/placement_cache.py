"""Placement indexes kept between requests, so a decision does not re-read every free host.

Who uses it: `services.capacity.allocation` (choose, claim and release hosts, for creates, scale-ups
and repairs alike); every other change to which hosts are placeable (fleet sync, drains,
capacity pools, hosts back from repair) calls `invalidate`. One cache per database engine.

Invariants:
    * The database decides: a host is handed out only by the conditional claim UPDATE in
      `allocation.claim_hosts`, so a stale index costs a retry, never a double
      allocation. A failed claim drops the index.
    * Kept in step: within this process a kept index offers exactly what a fresh read
      would (released hosts are put back, other changes invalidate it), so decisions do
      not depend on when an index was last rebuilt.
    * Choosing and marking the chosen hosts taken happen under one lock, so two requests
      of this process never pick the same host.
    * An index lives `ttl_seconds` of wall time (monotonic) and is then rebuilt from the
      database, so hosts freed by another replica (or straight in the database) are
      offered again within that time. Hosts released through `allocation.release_host`
      are put back when the release commits.
    * "No fit" is never answered from a kept index: the decision is re-run on an index
      rebuilt from the database (with the counts of unplaceable hosts for the message).
    * Hosts reserved by a transaction of this process stay out of every index, rebuilt
      ones included, until that transaction ends (a rebuild does not see uncommitted
      claims on PostgreSQL); a rollback puts them back at once.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from clusterplane.domain.placement import FreeHost, PlacementIndex
from clusterplane.errors import CapacityUnavailable

DEFAULT_TTL_SECONDS = 5.0

Key = tuple[str, str]  # (region, gpu_type)


@dataclass(frozen=True)
class Snapshot:
    """An index read from the database, and the fleet time at which what was read changes
    by itself (a capacity pool's window ends and its hosts become general): None, never."""

    index: PlacementIndex
    good_until: datetime | None = None


Loader = Callable[[bool], Snapshot]  # full: also count the unplaceable hosts
Decision = Callable[[PlacementIndex], tuple[str, ...]]


@dataclass
class _Entry:
    index: PlacementIndex
    loaded_at: float
    good_until: datetime | None


class PlacementCache:
    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.ttl_seconds = ttl_seconds
        self._monotonic = monotonic
        self._entries: dict[Key, _Entry] = {}
        self._pending: dict[Key, dict[str, FreeHost]] = {}
        self._lock = threading.Lock()

    def _load(self, key: Key, load: Loader, full: bool, now: float) -> _Entry:
        snapshot = load(full)
        snapshot.index.take(self._pending.get(key, {}))
        entry = self._entries[key] = _Entry(snapshot.index, now, snapshot.good_until)
        return entry

    def reserve(
        self,
        session: Session,
        key: Key,
        decide: Decision,
        load: Loader,
        *,
        fresh: bool = False,
        fleet_now: datetime | None = None,
    ) -> tuple[str, ...]:
        """Run `decide` on the index of `key` and keep its answer out of every index
        until `session`'s transaction ends.

        `fresh` rebuilds the index first, and so does a kept index that is no longer good
        at `fleet_now`. A `CapacityUnavailable` from a kept index is re-checked on a
        rebuilt one before it is raised.
        """
        with self._lock:
            now = self._monotonic()
            entry = self._entries.get(key)
            if (
                fresh
                or entry is None
                or now - entry.loaded_at > self.ttl_seconds
                or (
                    entry.good_until is not None
                    and fleet_now is not None
                    and fleet_now >= entry.good_until
                )
            ):
                entry = self._load(key, load, False, now)
            try:
                chosen = decide(entry.index)
            except CapacityUnavailable:
                entry = self._load(key, load, True, now)
                chosen = decide(entry.index)
            hosts = entry.index.hosts_of(chosen)
            entry.index.take(chosen)
            self._pending.setdefault(key, {}).update((h.host_id, h) for h in hosts)
        session.info.setdefault(_RESERVED, []).append((self, key, hosts))
        return chosen

    def forget(self, session: Session, key: Key) -> None:
        """The claim of `session`'s reservations for `key` failed: drop them and the index
        (a fresh one is read for the retry)."""
        kept = []
        for cache, reserved_key, hosts in session.info.get(_RESERVED, []):
            if cache is self and reserved_key == key:
                self._settle(key, hosts, put_back=False)
            else:
                kept.append((cache, reserved_key, hosts))
        session.info[_RESERVED] = kept
        self.drop(key)

    def _settle(self, key: Key, hosts: list[FreeHost], *, put_back: bool) -> None:
        with self._lock:
            pending = self._pending.get(key, {})
            for host in hosts:
                pending.pop(host.host_id, None)
            entry = self._entries.get(key)
            if put_back and entry is not None:
                entry.index.put_back(hosts)

    def put_back(self, key: Key, hosts: Iterable[FreeHost]) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.index.put_back(hosts)

    def drop(self, key: Key | None = None) -> None:
        """Forget the index of `key`, or every index."""
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)


_RESERVED = "clusterplane_placement_reserved"
_STALE = "clusterplane_placement_stale"
_RETURNED = "clusterplane_placement_returned"


def put_back_on_commit(session: Session, key: Key, hosts: Iterable[FreeHost]) -> None:
    """Hosts `session` made free again: offered once (and if) its transaction commits."""
    session.info.setdefault(_RETURNED, []).append((for_session(session), key, list(hosts)))


def invalidate(session: Session, key: Key | None = None) -> None:
    """`session` changed which hosts of `key` (every key: None) are placeable: drop the
    kept index now and again when the transaction ends, so no index read in between
    outlives the change."""
    cache = for_session(session)
    cache.drop(key)
    session.info.setdefault(_STALE, []).append((cache, key))


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for cache, key, hosts in session.info.pop(_RESERVED, []):
        cache._settle(key, hosts, put_back=False)
    for cache, key, hosts in session.info.pop(_RETURNED, []):
        cache.put_back(key, hosts)
    _drop_stale(session)


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    for cache, key, hosts in session.info.pop(_RESERVED, []):
        cache._settle(key, hosts, put_back=True)
    session.info.pop(_RETURNED, None)
    _drop_stale(session)


def _drop_stale(session: Session) -> None:
    for cache, key in session.info.pop(_STALE, []):
        cache.drop(key)


_caches: weakref.WeakKeyDictionary[Engine, PlacementCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def for_session(session: Session) -> PlacementCache:
    """The cache of the database `session` talks to."""
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    with _caches_lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = PlacementCache()
        return cache

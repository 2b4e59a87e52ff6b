"""Encoded responses of hot reads, kept for a moment and dropped at the first write.

Who uses it: `GET /v1/compute/clusters/{id}` (the SDK and the CLI poll it while a cluster
comes up). A hit answers from the event loop without a thread hop, a transaction or a
query; a miss reads as usual and stores what it answered.

Invariants:
    * An entry is served only while this process has committed no write since the read
      that produced it began (`db.writes.WriteCounter`), and for at most `ttl_seconds`
      of wall time: a single server never answers from before its own writes, and a
      replica beside it is seen within `ttl_seconds`.
    * An entry remembers the project of the object it shows; the caller's right to see
      that project is checked on every hit, so a cache never widens visibility.
    * Bodies above `max_body_bytes` are not kept, nor more than `max_entries` entries
      (past that the cache starts over); `ttl_seconds <= 0` turns caching off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cached:
    generation: int
    expires: float
    project_id: str
    body: bytes


class ReadCache:
    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = 4096,
        max_body_bytes: int = 1 << 20,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.max_body_bytes = max_body_bytes
        self._monotonic = monotonic
        self._entries: dict[str, Cached] = {}
        self._lock = threading.Lock()

    def get(self, key: str, generation: int) -> Cached | None:
        if self.ttl_seconds <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.generation != generation or entry.expires <= self._monotonic():
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            return None
        return entry

    def put(self, key: str, *, generation: int, project_id: str, body: bytes) -> None:
        if self.ttl_seconds <= 0 or len(body) > self.max_body_bytes:
            return
        entry = Cached(generation, self._monotonic() + self.ttl_seconds, project_id, body)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = entry

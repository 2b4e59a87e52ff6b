"""Recently authenticated API keys, so a request does not re-read its key, user, project
and memberships (four queries and a transaction) when the same key called a moment ago.

Who uses it: the API's `current_caller` dependency (one cache per server, on the app
state); admin endpoints that change keys or memberships clear it.

Invariants:
    * Only successful authentications are kept; a bad key always goes to the database
      (and a flood of bad keys cannot fill the cache).
    * Entries are keyed by the SHA-256 of the whole presented key, never the key itself.
    * An entry lives `ttl_seconds` of wall time (monotonic; `ServerSettings.
      caller_cache_seconds`), so a change made through another replica (a revoked key),
      or straight in the database, is seen within that time; changes made through this
      server clear the cache at once. A key past its `expires_at` is refused even while
      cached (`api.deps.current_caller` checks `Caller.expired`).
    * At most `max_entries` keys are held; past that the cache starts over.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from clusterplane.services.access.auth import Caller

DEFAULT_TTL_SECONDS = 2.0


class CallerCache:
    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        *,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def get(self, token: str) -> Caller | None:
        if self.ttl_seconds <= 0:
            return None
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._monotonic():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, token: str, caller: Caller) -> None:
        if self.ttl_seconds <= 0:
            return
        key = self._key(token)
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (self._monotonic() + self.ttl_seconds, caller)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

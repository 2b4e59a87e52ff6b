"""A bound on each key's responses in flight, so one tenant cannot hold every worker,
socket and buffer of the server (a crowd of clients that ask and never read).

`InFlight.admit(caller)` is called once a request is authenticated (`deps.current_caller`):
past `limit` responses of that key still being answered, it raises `TooManyRequests` (429
in the spec's envelope, with `retry-after`, which the SDK honours). A response counts until
its last byte is sent or its client is gone: `ReleaseSlots`, the middleware in front of
the app, gives each admitted slot back when the app's call for that request returns,
which is after the body went out.

Admin keys are not bounded: they are the operator's. Node agents' signed requests are
bounded per host by a second `InFlight` (`agents.max_inflight_per_host`, `admit_key`), so
one host (whose root may be a tenant's) cannot take every long-poll slot or worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import Request

from clusterplane.errors import TooManyRequests
from clusterplane.services.access.auth import Caller

RELEASES = "clusterplane.inflight_releases"
"""The `scope["state"]` key of a request's list of slot releases."""


class InFlight:
    def __init__(self, limit: int):
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, request: Request, caller: Caller) -> None:
        """Count this response against the caller's key, or refuse it (429)."""
        if caller.is_admin or self.limit <= 0:
            return
        self.admit_key(request, caller.api_key_id, "this API key")

    def admit_key(self, request: Request, key: str, whose: str) -> None:
        """Count this response against `key` (`whose` names it in the 429), or refuse it."""
        if self.limit <= 0:
            return
        releases: list[Callable[[], None]] | None = request.scope.get("state", {}).get(RELEASES)
        if releases is None:  # not behind the middleware (nothing would give the slot back)
            return
        with self._lock:
            count = self._counts.get(key, 0)
            if count >= self.limit:
                raise TooManyRequests(
                    f"{whose} already has {count} requests in flight; at most {self.limit} at once",
                    retry_after_seconds=1,
                )
            self._counts[key] = count + 1
        releases.append(lambda: self._release(key))

    def in_flight(self, key: str) -> int:
        with self._lock:
            return self._counts.get(key, 0)

    def _release(self, key: str) -> None:
        with self._lock:
            left = self._counts.get(key, 0) - 1
            if left > 0:
                self._counts[key] = left
            else:
                self._counts.pop(key, None)


class ReleaseSlots:
    """The ASGI middleware that gives back the slots a request took once the app's call
    returns (a plain ASGI one: `BaseHTTPMiddleware` would copy streamed bodies)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        releases: list[Callable[[], None]] = []
        scope.setdefault("state", {})[RELEASES] = releases
        try:
            await self.app(scope, receive, send)
        finally:
            for release in releases:
                release()

"""The console's live updates: a server-sent events stream of what changed for its key.

`GET /console/v1/stream` (api/routers/console.py) answers `text/event-stream`:

    event: hello      data: {"now": <fleet time>}             once, on connect
    event: change     data: {"now", "clusters": [ids], "removed": [ids],
                             "remediations": bool, "fleet": bool}
    event: end        data: {"reason": ...}                    then the stream closes
    : keepalive                                                 after a quiet while

The console reads the data it shows through the API; the stream carries ids only. Each
poll (`console.stream_poll_seconds`) is one short read transaction in a worker thread
(`services/events/console_feed.py`): no database connection is held between polls. It also reads
the key again, so a key revoked or expired ends its streams at the next poll.

Bounds (`ConsoleSettings`): `StreamSlots` admits at most `max_streams_per_key` streams
of one key and `max_streams` in all (429 with `retry-after` beyond); a stream ends after
`stream_max_seconds` (the client reconnects); each open stream also holds one of its
key's in-flight slots (api/inflight.py) as any response does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from clusterplane.api import presenters
from clusterplane.api.inflight import RELEASES
from clusterplane.db.engine import read_transaction
from clusterplane.db.rows import ApiKeyRow
from clusterplane.errors import TooManyRequests
from clusterplane.services.access.auth import Caller
from clusterplane.services.events import console_feed

if TYPE_CHECKING:
    from clusterplane.api.state import ApiState

RETRY_MILLISECONDS = 2000  # what the stream asks a client to wait before reconnecting


class StreamSlots:
    """Open streams per key and in all, bounded."""

    def __init__(self, per_key: int, total: int):
        self.per_key = per_key
        self.total = total
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, request: Request, key_id: str) -> None:
        """Count a stream of `key_id` until the app's call for `request` returns (the
        `ReleaseSlots` middleware gives it back, whether the stream ended or its client
        went), or refuse it (429)."""
        releases: list[Callable[[], None]] | None = request.scope.get("state", {}).get(RELEASES)
        if releases is None:  # not behind the middleware (nothing would give it back)
            return
        self._acquire(key_id)
        releases.append(lambda: self._release(key_id))

    def _acquire(self, key_id: str) -> None:
        with self._lock:
            mine = self._counts.get(key_id, 0)
            if mine >= self.per_key:
                raise TooManyRequests(
                    f"this API key already has {mine} console streams open; "
                    f"at most {self.per_key} at once",
                    retry_after_seconds=5,
                )
            if sum(self._counts.values()) >= self.total:
                raise TooManyRequests("the server has no room for another console stream")
            self._counts[key_id] = mine + 1

    def _release(self, key_id: str) -> None:
        with self._lock:
            left = self._counts.get(key_id, 0) - 1
            if left > 0:
                self._counts[key_id] = left
            else:
                self._counts.pop(key_id, None)

    def open(self, key_id: str) -> int:
        with self._lock:
            return self._counts.get(key_id, 0)


def message(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + presenters.encode(data) + b"\n\n"


def _key_ended(session: Any, caller: Caller, wall_now: datetime) -> str | None:
    row = session.get(ApiKeyRow, caller.api_key_id)
    if row is None or row.revoked_at is not None:
        return "the API key was revoked"
    if row.expires_at is not None and row.expires_at <= wall_now:
        return "the API key expired"
    return None


def _poll(
    state: ApiState, caller: Caller, previous: console_feed.Snapshot | None
) -> tuple[console_feed.Snapshot, str | None]:
    with read_transaction(state.sessions) as session:
        ended = _key_ended(session, caller, state.wall_clock.now())
        return console_feed.read_snapshot(session, caller, previous), ended


async def events(state: ApiState, caller: Caller) -> AsyncIterator[bytes]:
    """The stream's bytes, until its key ends, its lifetime is over or its client goes
    (then the framework cancels this generator)."""
    settings = state.settings.console
    snapshot, ended = await run_in_threadpool(_poll, state, caller, None)
    yield f"retry: {RETRY_MILLISECONDS}\n".encode() + message("hello", {"now": state.clock.now()})
    started = quiet_since = time.monotonic()
    while ended is None:
        await asyncio.sleep(settings.stream_poll_seconds)
        if time.monotonic() - started >= settings.stream_max_seconds:
            ended = "the stream reached its longest lifetime; connect again"
            break
        current, ended = await run_in_threadpool(_poll, state, caller, snapshot)
        changes = console_feed.changes(snapshot, current)
        snapshot = current
        if changes:
            yield message("change", {"now": state.clock.now(), **changes.body()})
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settings.stream_heartbeat_seconds:
            yield b": keepalive\n\n"
            quiet_since = time.monotonic()
    yield message("end", {"reason": ended})

"""Agents waiting for a newer assignment: bounded, and holding nothing while they wait.

A waiting long-poll is a coroutine on the event loop: it holds no database connection and
no worker thread. It looks at the host's generation (a short read in the thread pool)
when a write by this process announces a change (`announce`, thread-safe) and at least
every `recheck_seconds` (writes by other replicas), until the generation passes the one
the agent has or the wait is over. At most `limit` polls wait at once per process; one
over the limit is answered at once, with a `Retry-After` the agent honours.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable


class LongPolls:
    def __init__(self, *, limit: int, recheck_seconds: float):
        self.limit = limit
        self.recheck_seconds = recheck_seconds
        self.waiting = 0
        self._events: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def try_enter(self) -> bool:
        if self.waiting >= self.limit:
            return False
        self.waiting += 1
        return True

    def leave(self) -> None:
        self.waiting -= 1

    async def wait_past(
        self,
        host_id: str,
        after: int,
        *,
        seconds: float,
        read_generation: Callable[[], Awaitable[int]],
    ) -> int:
        """The host's generation once it passes `after`, or as it is when time is up."""
        self._loop = asyncio.get_running_loop()
        deadline = time.monotonic() + seconds
        generation = await read_generation()
        while generation <= after:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            event = self._events.setdefault(host_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(self.recheck_seconds, remaining))
            if event.is_set():
                self._events.pop(host_id, None)
            generation = await read_generation()
        return generation

    def announce(self, host_id: str) -> None:
        """A new generation for `host_id` was committed by this process (any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake, host_id)

    def _wake(self, host_id: str) -> None:
        event = self._events.pop(host_id, None)
        if event is not None:
            event.set()

"""Single flight: concurrent lookups of one key share one lookup and its answer.

Who uses it: `api.deps.current_caller`. When a hundred node agents sharing a key report
at once and that key is not in the caller cache (a storm after a quiet spell), each
request would authenticate on its own: a thread hop and four queries, a hundred times
over. Here the first request's lookup runs and the others await it.

Invariants:
    * A lookup is shared only by requests on the same event loop, only while it runs;
      nothing is cached here (that is `services.access.caller_cache`).
    * Its error is every waiter's error, as it would have been for each alone.
    * A waiter that goes away (its request cancelled) does not cancel the lookup the
      others await.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SingleFlight(Generic[V]):
    def __init__(self) -> None:
        self._running: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Task[V]] = {}

    async def run(self, key: Hashable, lookup: Callable[[], Awaitable[V]]) -> V:
        slot = (asyncio.get_running_loop(), key)
        task = self._running.get(slot)
        if task is None:
            task = asyncio.ensure_future(lookup())
            self._running[slot] = task
            task.add_done_callback(lambda _: self._running.pop(slot, None))
        return await asyncio.shield(task)

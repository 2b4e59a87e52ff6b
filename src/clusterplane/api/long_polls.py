"""Agents waiting for a newer assignment: bounded, and holding nothing while they wait.

A waiting long-poll is a coroutine on the event loop: it holds no database connection and
no worker thread. It is woken when a write by this process announces a change for its
host (`announce`, callable from any thread), or by the watcher: one task per process
that, while anyone waits, reads the generations of every waiting host in one query per
`recheck_seconds` (writes by other replicas). At most `limit` polls wait at once per
process; the router answers one over the limit at once, with a `Retry-After`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

ReadGenerations = Callable[[list[str]], dict[str, int]]


@dataclass(eq=False)
class _Waiter:
    host_id: str
    after: int
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class LongPolls:
    def __init__(
        self,
        *,
        limit: int,
        recheck_seconds: float,
        read_generations: ReadGenerations | None = None,
    ):
        self.limit = limit
        self.recheck_seconds = recheck_seconds
        self._read = read_generations
        self.waiting = 0
        self._waiters: set[_Waiter] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def try_enter(self) -> bool:
        if self.waiting >= self.limit:
            return False
        self.waiting += 1
        return True

    def leave(self) -> None:
        self.waiting -= 1

    async def wait_past(self, host_id: str, after: int, *, seconds: float) -> bool:
        """Wait until the host's generation may have passed `after` (True) or time is up."""
        self._loop = asyncio.get_running_loop()
        waiter = _Waiter(host_id, after)
        self._waiters.add(waiter)
        if self._read is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = self._loop.create_task(self._watch())
        try:
            await asyncio.wait_for(waiter.woken.wait(), seconds)
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(waiter)
        return True

    async def _watch(self) -> None:
        assert self._read is not None
        while self._waiters:
            await asyncio.sleep(self.recheck_seconds)
            hosts = sorted({w.host_id for w in self._waiters})
            if not hosts:
                return
            try:
                generations = await run_in_threadpool(self._read, hosts)
            except Exception:
                log.exception("could not read assignment generations; retrying")
                continue
            for waiter in list(self._waiters):
                if generations.get(waiter.host_id, 0) > waiter.after:
                    waiter.woken.set()

    def announce(self, host_id: str) -> None:
        """A new generation for `host_id` was committed by this process (any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake, host_id)

    def _wake(self, host_id: str) -> None:
        for waiter in list(self._waiters):
            if waiter.host_id == host_id:
                waiter.woken.set()

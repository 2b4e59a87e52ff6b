"""Group commit: concurrent writes of one kind, written in one transaction per batch.

Who uses it: the health API, where a failure storm makes a hundred node agents report at
once. Written one request at a time, each report paid its own transaction, its own
statements and its own thread hop, one after another behind the single writer; written
together they share them.

How: `submit` (on the event loop) queues an item and awaits its outcome. While items are
queued one writer thread runs: it takes everything queued (up to `max_batch`), calls
`write(session, items)` in one transaction and, once that has committed, answers each
item's waiter. What arrives meanwhile waits for the next batch, so a lone request is
written at once and a burst costs a few transactions, not one each.

Invariants:
    * An item's outcome is answered only after the transaction that wrote it committed
      (or rolled back, for an error): never an answer for a write that is not there.
    * `write` returns one outcome per item, in order; an exception as an outcome is that
      item's own refusal (it must have written nothing) and is raised to its waiter.
    * One bad item never fails its batch-mates: if `write` or the commit raises, the batch
      is rolled back and each of its items is written again in a transaction of its own,
      so only the item that fails alone gets the error.
    * Another writer's interference (a deadlock or serialization failure between replicas,
      a unique index a concurrent writer filled first: `db.retry.is_retryable`) is not an
      item's fault: the rolled-back batch (or item) is written again, up to `retries`
      times, before it is split or the error answered. Nothing is written twice: each
      attempt's transaction was rolled back.
    * At most one writer thread per `GroupCommit`; it exits when the queue is empty.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.engine import transaction
from clusterplane.db.retry import backoff, is_retryable

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        write: Callable[[Session, Sequence[T]], Sequence[R | Exception]],
        *,
        max_batch: int = 64,
        name: str = "group-commit",
        retries: int = 5,
    ):
        self._sessions = sessions
        self._write = write
        self.max_batch = max_batch
        self._name = name
        self.retries = retries
        self._lock = threading.Lock()
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._writing = False

    async def submit(self, item: T) -> R:
        """Queue `item` and wait until its batch has committed; its outcome, or its error."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._queue.append((item, future))
            start = not self._writing
            self._writing = True
        if start:
            threading.Thread(target=self._drain, name=self._name, daemon=True).start()
        return await future

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                if not batch:
                    self._writing = False
                    return
            try:
                outcomes = self.write_batch([item for item, _ in batch])
            except BaseException as exc:  # interpreter exit: answer, so no waiter hangs
                with self._lock:
                    batch += self._queue
                    self._queue.clear()
                    self._writing = False
                _answer(batch, [RuntimeError(f"{self._name} stopped: {exc!r}")] * len(batch))
                raise
            _answer(batch, outcomes)

    def write_batch(self, items: Sequence[T]) -> list[R | Exception]:
        """Write `items` in one transaction, or each alone if that fails; their outcomes."""
        try:
            return self._write_retrying(items)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            log.warning(
                "%s: a batch of %d failed (%s); writing each alone", self._name, len(items), exc
            )
            return [self.write_batch([item])[0] for item in items]

    def _write_retrying(self, items: Sequence[T]) -> list[R | Exception]:
        """One transaction for `items`, again while another writer's interference fails it."""
        attempt = 0
        while True:
            try:
                with transaction(self._sessions) as session:
                    outcomes = list(self._write(session, items))
                    if len(outcomes) != len(items):
                        raise RuntimeError(f"{len(outcomes)} outcomes for {len(items)} items")
                return outcomes
            except Exception as exc:
                attempt += 1
                if attempt > self.retries or not is_retryable(exc):
                    raise
                log.info("%s: %s; writing the batch again (%d)", self._name, exc, attempt)
                time.sleep(backoff(attempt))


def _answer(
    batch: Sequence[tuple[object, asyncio.Future[R]]], outcomes: Sequence[R | Exception]
) -> None:
    """Settle each waiter on its own event loop, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[R], R | Exception]]] = {}
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(future.get_loop(), []).append((future, outcome))
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:  # that loop has closed: nobody is waiting there any more
            continue


def _settle(settled: Sequence[tuple[asyncio.Future[R], R | Exception]]) -> None:
    for future, outcome in settled:
        if future.done():  # its request was cancelled (the client went away)
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

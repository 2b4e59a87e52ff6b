"""The webhook dispatcher: drains the outbox (services/events/webhook_outbox.py) in its own thread.

It never runs inside the engine's controller passes, so no cluster, node or repair ever
waits on a receiver: the engine's part is one INSERT per event. Each loop fans new events
out into deliveries, leases the due ones the in-flight bounds allow and sends them as
concurrent asyncio tasks (each attempt bounded by `timeout_seconds`), then sleeps for the
poll interval or until nudged or a send ends. Database work runs in worker threads, and
no database connection is held while a request is out. A delivery whose attempt is cut
short by a crash or a stop is leased again once its lease lapses, so delivery is at least
once; receivers deduplicate by the `Clusterplane-Delivery` header.

`run_once` does one pass synchronously and waits for its sends: how tests drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime

import httpx
from sqlalchemy.engine import Engine

from clusterplane.clock import Clock
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.domain.webhooks import AttemptOutcome
from clusterplane.services.access.sealing import SealError, SecretBox
from clusterplane.services.events import webhook_outbox as outbox
from clusterplane.services.events.webhooks import policy

from .base import ControllerContext
from .webhook_sender import Sender

log = logging.getLogger(__name__)
PRUNE_EVERY_SECONDS = 60.0
# A lease outlives an attempt by this much, so a slow attempt is never sent twice at once.
LEASE_MARGIN_SECONDS = 30.0
FAN_OUT_ROUNDS = 20  # batches of new events per pass at most


class WebhookDispatcher:
    name = "webhooks"

    def __init__(self, ctx: ControllerContext, box: SecretBox, wall_clock: Clock):
        self.ctx = ctx
        self.box = box
        self.clock = wall_clock
        self.settings = ctx.settings.webhooks
        self.sender = Sender(self.settings, policy(self.settings))
        self.lease_seconds = self.settings.timeout_seconds + LEASE_MARGIN_SECONDS
        self._random = random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._pruned_at: datetime | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.nudge()
        if self._thread is not None:
            self._thread.join(timeout)

    def nudge(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def run_once(self) -> int:
        """Fan out, send every delivery due now that the bounds allow, wait for them all;
        returns how many were sent."""
        return asyncio.run(self._pass_and_wait())

    async def _pass_and_wait(self) -> int:
        await asyncio.to_thread(self._housekeeping)
        claimed = await asyncio.to_thread(self._claim, self.settings.max_concurrent)
        async with self.sender.client() as client:
            await asyncio.gather(*(self._deliver(client, i, t) for i, t in claimed))
        return len(claimed)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.exception("webhook dispatcher stopped")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        interval = self.settings.poll_interval_seconds
        sending: set[asyncio.Task[None]] = set()
        async with self.sender.client() as client:
            while not self._stop.is_set():
                try:
                    await self._pass(client, sending)
                except Exception:
                    log.exception("webhook dispatcher pass failed; next pass tries again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), interval)
                self._wake.clear()
            for task in sending:
                task.cancel()  # its lease lapses and another pass sends it again
            await asyncio.gather(*sending, return_exceptions=True)

    async def _pass(self, client: httpx.AsyncClient, sending: set[asyncio.Task[None]]) -> None:
        waiting = await asyncio.to_thread(self._waiting)
        if waiting.events or self._prune_due():
            await asyncio.to_thread(self._housekeeping)
        free = self.settings.max_concurrent - len(sending)
        if not (waiting.events or waiting.deliveries) or free <= 0:
            return
        for delivery_id, token in await asyncio.to_thread(self._claim, free):
            task = asyncio.create_task(self._deliver(client, delivery_id, token))
            sending.add(task)
            task.add_done_callback(self._sent(sending))

    def _sent(self, sending: set[asyncio.Task[None]]) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            sending.discard(task)
            if self._wake is not None:
                self._wake.set()  # room for another delivery

        return done

    def _waiting(self) -> outbox.Waiting:
        engine: Engine = self.ctx.sessions.kw["bind"]
        return outbox.work_waiting(engine, self.clock.now())

    def _prune_due(self) -> bool:
        last = self._pruned_at
        return last is None or (self.clock.now() - last).total_seconds() >= PRUNE_EVERY_SECONDS

    def _housekeeping(self) -> None:
        for _ in range(FAN_OUT_ROUNDS):
            with transaction(self.ctx.sessions) as session:
                taken = outbox.fan_out(session, self.settings, self.clock.now())
            if taken < outbox.FAN_OUT_BATCH:
                break
        if self._prune_due():
            now = self.clock.now()
            with transaction(self.ctx.sessions) as session:
                outbox.prune(session, now=now, retention_seconds=self.settings.retention_seconds)
            self._pruned_at = now

    def _claim(self, want: int) -> list[tuple[str, str]]:
        with transaction(self.ctx.sessions) as session:
            return outbox.claim_due(
                session,
                self.settings,
                now=self.clock.now(),
                owner=self.ctx.owner,
                want=want,
                lease_seconds=self.lease_seconds,
            )

    async def _deliver(self, client: httpx.AsyncClient, delivery_id: str, token: str) -> None:
        try:
            outgoing = await asyncio.to_thread(self._load, delivery_id, token)
            if isinstance(outgoing, AttemptOutcome):
                outcome = outgoing
            elif outgoing is None:
                await asyncio.to_thread(self._give_back, delivery_id, token)
                return
            else:
                timestamp = int(self.clock.now().timestamp())
                outcome = await self.sender.send(client, outgoing, timestamp)
            await asyncio.to_thread(self._record, delivery_id, token, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "webhook delivery %s failed; its lease lapses and it is retried", delivery_id
            )

    def _load(self, delivery_id: str, token: str) -> outbox.Outgoing | AttemptOutcome | None:
        with read_transaction(self.ctx.sessions) as session:
            try:
                return outbox.load_outgoing(session, delivery_id, token, self.box)
            except SealError as exc:
                return AttemptOutcome(status_code=None, error=exc.message, duration_ms=0)

    def _give_back(self, delivery_id: str, token: str) -> None:
        with transaction(self.ctx.sessions) as session:
            outbox.release_unsent(session, delivery_id, token)

    def _record(self, delivery_id: str, token: str, outcome: AttemptOutcome) -> None:
        with transaction(self.ctx.sessions) as session:
            outbox.record_attempt(
                session,
                delivery_id,
                token,
                outcome,
                settings=self.settings,
                now=self.clock.now(),
                jitter=self._random.random(),
            )

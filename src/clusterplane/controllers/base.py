"""What every controller shares: its context and the lease-snapshot-act-apply pass.

A controller's `reconcile(row_id, token)` is called for one leased row at a time. A driver's
`TemporaryProviderError` ("not yet") releases the lease and retries the row after the delay
it asked for, recording nothing as failed; any other exception retries it after 10 s of
fleet time. (`PermanentProviderError` is each controller's to catch: it fails the node,
step, drain or volume it happened to.) One bad row never stops the others. Controllers
reach drivers only through `ctx.drivers` (`providers.registry.Drivers`). Each pass counts
into `ctx.metrics`: its duration, what became of each row, and leases it took over.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from clusterplane import logs
from clusterplane.clock import Clock, SystemClock
from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.errors import TemporaryProviderError
from clusterplane.metrics import Metrics
from clusterplane.providers.registry import Drivers
from clusterplane.settings import Settings

log = logging.getLogger(__name__)

RETRY_AFTER_ERROR = timedelta(seconds=10)
# The log-record id (`clusterplane.logs`) a row of these tables is, while it is reconciled.
ROW_LOG_IDS = {"clusters": "cluster_id", "nodes": "node_id"}


@dataclass
class ControllerContext:
    sessions: sessionmaker[Session]
    clock: Clock
    drivers: Drivers
    settings: Settings
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    # Leases expire on wall time, whatever the fleet clock's scale; simulations inject theirs.
    lease_clock: Clock = field(default_factory=SystemClock)
    # Pass durations, row outcomes and lease takeovers are counted here (`GET /metrics`).
    metrics: Metrics = field(default_factory=Metrics)


class Controller(Protocol):
    name: str
    row_type: Any

    def reconcile(self, row_id: str, token: str) -> None: ...


def run_pass(controller: Controller, ctx: ControllerContext) -> int:
    """One pass over the due rows of `controller`; returns how many rows it worked on.

    The due rows are found and leased in one transaction; a lease that has run half its
    time by the row's turn (a slow pass) is renewed first, and a row whose lease was lost
    meanwhile is left to its new holder. A failure (the database, a driver, a bug) costs
    at most the row it happened on: the pass goes on with the others, and that row is
    retried later. A pass that found rows is timed, and each row's outcome counted
    (`ctx.metrics`).
    """
    metrics = ctx.metrics.controller(controller.name)
    started = time.perf_counter()
    claimed, claimed_at = _claim(controller, ctx)
    worked = 0
    for row_id, token in claimed:
        held = (ctx.lease_clock.now() - claimed_at).total_seconds()
        if held > ctx.settings.engine.lease_seconds / 2 and not _renew(
            controller, ctx, row_id, token
        ):
            metrics.rows["lost"].inc()
            continue
        worked += 1
        metrics.rows[_reconcile(controller, ctx, row_id, token)].inc()
    if claimed:
        metrics.pass_seconds.observe(time.perf_counter() - started)
    metrics.last_pass.set(time.time())
    return worked


def _claim(
    controller: Controller, ctx: ControllerContext
) -> tuple[list[tuple[str, str]], datetime]:
    """The (id, token) of the rows this pass leased, and the wall time it leased them."""
    metrics = ctx.metrics.controller(controller.name)
    now = ctx.clock.now()
    claimed_at = ctx.lease_clock.now()
    taken_over: list[str] = []
    try:
        engine = ctx.sessions.kw["bind"]
        if not leases.anything_due(engine, controller.row_type, fleet_now=now, wall=claimed_at):
            return [], claimed_at
        with transaction(ctx.sessions) as session:
            claimed_at = ctx.lease_clock.now()
            claimed = leases.claim_due(
                session,
                controller.row_type,
                fleet_now=now,
                wall=claimed_at,
                limit=ctx.settings.engine.batch_size,
                owner=ctx.owner,
                seconds=ctx.settings.engine.lease_seconds,
                taken_over=taken_over,
            )
    except Exception:
        log.exception("%s: could not claim due rows; next pass tries again", controller.name)
        metrics.claim_errors.inc()
        return [], claimed_at
    if taken_over:
        log.warning("%s: took over lapsed leases of %s", controller.name, ", ".join(taken_over))
        metrics.takeovers.inc(len(taken_over))
    return claimed, claimed_at


def _reconcile(controller: Controller, ctx: ControllerContext, row_id: str, token: str) -> str:
    """Reconcile one leased row; its outcome (`metrics.ROW_OUTCOMES`)."""
    log_id = ROW_LOG_IDS.get(getattr(controller.row_type, "__tablename__", ""))
    try:
        with logs.scope(**({log_id: row_id} if log_id else {})):
            controller.reconcile(row_id, token)
    except TemporaryProviderError as not_yet:
        log.info("%s: %s not yet: %s", controller.name, row_id, not_yet.message)
        delay = timedelta(seconds=not_yet.delay_seconds)
        _release_after_error(controller, ctx, row_id, token, delay)
        return "not_yet"
    except Exception:
        log.exception("%s: reconcile of %s failed; retrying later", controller.name, row_id)
        _release_after_error(controller, ctx, row_id, token, RETRY_AFTER_ERROR)
        return "error"
    return "done"


def _renew(controller: Controller, ctx: ControllerContext, row_id: str, token: str) -> bool:
    try:
        with transaction(ctx.sessions) as session:
            return leases.renew(
                session,
                controller.row_type,
                row_id,
                token,
                seconds=ctx.settings.engine.lease_seconds,
                wall=ctx.lease_clock.now(),
            )
    except Exception:
        log.exception("%s: could not renew %s; next pass tries again", controller.name, row_id)
        return False


def _release_after_error(
    controller: Controller, ctx: ControllerContext, row_id: str, token: str, delay: timedelta
) -> None:
    retry_at: datetime = ctx.clock.now() + delay
    try:
        with transaction(ctx.sessions) as session:
            leases.release_by_token(session, controller.row_type, row_id, token, retry_at=retry_at)
    except Exception:
        log.exception("%s: could not release %s; its lease will expire", controller.name, row_id)

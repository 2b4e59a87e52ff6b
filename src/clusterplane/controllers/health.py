"""Health controllers: the simulated agents' faults, active check runs, held signals.

Each is one guarded transaction per leased row, calling the service that owns the rule:
* `fault_controller` (`services.faults.advance_fault`): report a simulated fault when its
  time comes, and its clearing;
* `check_run_controller` (`services.checks.advance_check`): start and finish check runs;
* `health_event_controller` (`services.health.evaluate_event`): look again at a signal a
  rail held back (cooldown over, stop rule lifted) or whose repair ended.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import HealthCheckRunRow, HealthEventRow, HostFaultRow
from clusterplane.services import checks, faults, health
from clusterplane.settings import Settings

from .base import ControllerContext

Step = Callable[[Session, Settings, Any, datetime], object]


class RowStepController:
    """Leases one row, runs `step` on it in one guarded transaction, releases it."""

    def __init__(self, ctx: ControllerContext, *, name: str, row_type: Any, step: Step):
        self.ctx = ctx
        self.name = name
        self.row_type = row_type
        self._step = step

    def reconcile(self, row_id: str, token: str) -> None:
        with transaction(self.ctx.sessions) as session:
            row = leases.load_guarded(session, self.row_type, row_id, token)
            if row is None:
                return
            self._step(session, self.ctx.settings, row, self.ctx.clock.now())
            leases.release(row)


def fault_controller(ctx: ControllerContext) -> RowStepController:
    return RowStepController(ctx, name="faults", row_type=HostFaultRow, step=faults.advance_fault)


def check_run_controller(ctx: ControllerContext) -> RowStepController:
    return RowStepController(
        ctx, name="health_checks", row_type=HealthCheckRunRow, step=checks.advance_check
    )


def health_event_controller(ctx: ControllerContext) -> RowStepController:
    return RowStepController(
        ctx,
        name="health_events",
        row_type=HealthEventRow,
        step=lambda session, settings, row, now: health.evaluate_event(
            session, settings.health, row, now
        ),
    )

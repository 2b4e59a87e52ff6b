"""Health controllers: active check runs and held signals.

* `CheckRunController`: starts and polls each check run through its host driver's check
  feature (`providers.contracts.HostChecks`), outside any transaction, then applies the
  result with `services.health.checks.advance_check` in one transaction guarded by the lease;
* `health_event_controller` (`services.health.evaluate_event`): look again at a signal a
  rail held back (cooldown over, stop rule lifted) or whose repair ended.
`RowStepController` is the shape of a controller whose whole pass is one service call
(the composition root plugs in more of them, such as the simulated agents' faults).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import HealthCheckRunRow, HealthEventRow, HostRow
from clusterplane.domain.checks import CheckState
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.models import CheckProgress, CheckSpec
from clusterplane.services.health import checks, health
from clusterplane.settings import Settings

from .base import ControllerContext
from .specs import host_spec

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


def failed_check(message: str) -> CheckProgress:
    return CheckProgress(False, {}, failed=True, message=message)


class CheckRunController:
    name = "health_checks"
    row_type = HealthCheckRunRow

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx

    def reconcile(self, row_id: str, token: str) -> None:
        with transaction(self.ctx.sessions) as session:
            run = session.get(HealthCheckRunRow, row_id)
            host = session.get(HostRow, run.host_id) if run is not None else None
            session.expunge_all()
        if run is None:
            return
        now = self.ctx.clock.now()
        progress = self._act(run, host, now)
        with transaction(self.ctx.sessions) as session:
            live = leases.load_guarded(session, HealthCheckRunRow, row_id, token)
            if live is None:
                return
            checks.advance_check(session, self.ctx.settings, live, progress, now)
            leases.release(live)

    def _act(
        self, run: HealthCheckRunRow, host: HostRow | None, now: datetime
    ) -> CheckProgress | None:
        """The driver's word on a running check that is due; None when there is none."""
        due = run.next_reconcile_at is not None and now >= run.next_reconcile_at
        if run.state != CheckState.RUNNING or not due:
            return None
        if host is None:
            return failed_check("host gone")
        spec = CheckSpec(run_id=run.id, kind=run.check, level=run.level, purpose=run.purpose)
        try:
            feature = self.ctx.drivers.checks(host.driver)
            if feature is None:
                return failed_check(f"the {host.driver} host driver runs no active checks")
            if run.driver_state is None:
                return feature.start_check(host_spec(host), spec, now)
            return feature.poll_check(host_spec(host), spec, run.driver_state, now)
        except PermanentProviderError as exc:
            return failed_check(exc.message)


def health_event_controller(ctx: ControllerContext) -> RowStepController:
    return RowStepController(
        ctx,
        name="health_events",
        row_type=HealthEventRow,
        step=lambda session, settings, row, now: health.evaluate_event(
            session, settings.health, row, now
        ),
    )

"""Health controllers: the simulated agents' faults, active check runs, held signals.

Each is one guarded transaction per leased row, calling the service that owns the rule:
* `FaultController` (`services.faults.advance_fault`): report a simulated fault when its
  time comes, and its clearing;
* `CheckRunController` (`services.checks.advance_check`): start and finish check runs;
* `HealthEventController` (`services.health.evaluate_event`): look again at a signal a
  rail held back (cooldown over, stop rule lifted) or whose repair ended.
"""

from __future__ import annotations

from typing import Any

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import HealthCheckRunRow, HealthEventRow, HostFaultRow
from clusterplane.services import checks, faults, health

from .base import ControllerContext


class _RowController:
    name = ""
    row_type: Any = None

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx

    def reconcile(self, row_id: str, token: str) -> None:
        with transaction(self.ctx.sessions) as session:
            row = leases.load_guarded(session, self.row_type, row_id, token)
            if row is None:
                return
            self.step(session, row)
            leases.release(row)

    def step(self, session: Any, row: Any) -> None:
        raise NotImplementedError


class FaultController(_RowController):
    name = "faults"
    row_type = HostFaultRow

    def step(self, session: Any, row: Any) -> None:
        faults.advance_fault(session, self.ctx.settings, row, self.ctx.clock.now())


class CheckRunController(_RowController):
    name = "health_checks"
    row_type = HealthCheckRunRow

    def step(self, session: Any, row: Any) -> None:
        checks.advance_check(session, self.ctx.settings, row, self.ctx.clock.now())


class HealthEventController(_RowController):
    name = "health_events"
    row_type = HealthEventRow

    def step(self, session: Any, row: Any) -> None:
        health.evaluate_event(session, self.ctx.settings.health, row, self.ctx.clock.now())

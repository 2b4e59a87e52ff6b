"""The remediation controller: executes approved repairs, one step per pass.

PENDING (for the grace period) -> QUARANTINING (the node is cordoned; the cluster's flavour
drains it, on clusterplane's behalf) -> QUARANTINED -> RUNNING (the mode is carried out by
`services.health.repairs`; the cluster controller boots or tears down instances) -> SUCCEEDED when
the repaired or replacement node runs (or the evicted node is gone), FAILED with
`error_message` when the mode cannot be carried out, CANCELLED when the cluster or node goes
away first. Decisions are the pure `domain.remediation.next_execution_state`. A drain or
reboot the driver fails (`PermanentProviderError`, failed progress) fails the remediation
with its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import (
    ClusterRow,
    HealthCheckRunRow,
    HealthEventRow,
    HostRow,
    NodeRow,
    RemediationRow,
)
from clusterplane.domain import rails
from clusterplane.domain.checks import CheckKind, CheckPurpose, CheckState
from clusterplane.domain.enums import (
    NodePhase,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from clusterplane.domain.remediation import (
    IN_PLACE,
    TERMINAL,
    ExecutionFacts,
    next_execution_state,
)
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.models import DrainSpec, DriverState, RebootKind
from clusterplane.services.events.events import cluster_scope, record_event
from clusterplane.services.health import check_runs, health, recovery, repairs

from .base import ControllerContext
from .specs import instance_spec

POLL = timedelta(seconds=5)
S = RemediationState
NODE_STATUS = {S.QUARANTINING: "Cordoning", S.QUARANTINED: "Drained"}
REPAIRING = (S.QUARANTINING, S.QUARANTINED, S.RUNNING)
# The check a repaired node must pass before it serves again: DCGM level 2 (MEDIUM).
VERIFY_LEVEL = 2


REBOOT_KIND = {
    RemediationMode.REBOOT_VM: RebootKind.REBOOT,
    RemediationMode.HOST_POWER_CYCLE: RebootKind.POWER_CYCLE,
}


@dataclass
class Acted:
    drain_state: DriverState | None = None
    drain_done: bool = False
    reboot_state: DriverState | None = None
    failed: str | None = None  # the driver's message when the drain or reboot failed


def drain_spec(row: RemediationRow, cluster: ClusterRow, node: NodeRow) -> DrainSpec:
    """The repaired node, drained on clusterplane's behalf, the reason naming the repair."""
    return DrainSpec(
        cluster_id=cluster.id,
        cluster_type=cluster.cluster_type,
        region=cluster.region,
        node_names=(node.node_name,),
        reason=f"{health.CORDONED_BY_US}: remediation {row.id}",
        drained_by=health.CORDONED_BY_US,
    )


class RemediationController:
    name = "remediations"
    row_type = RemediationRow

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx

    def reconcile(self, row_id: str, token: str) -> None:
        with transaction(self.ctx.sessions) as session:
            row = session.get(RemediationRow, row_id)
            node = session.get(NodeRow, row.node_row_id) if row is not None else None
            cluster = session.get(ClusterRow, row.cluster_id) if row is not None else None
            host = session.get(HostRow, node.host_id) if node and node.host_id else None
            session.expunge_all()
        if row is None or node is None or cluster is None:
            return
        now = self.ctx.clock.now()
        acted = self._act(row, node, cluster, host.driver if host else None, now)
        with transaction(self.ctx.sessions) as session:
            live = leases.load_guarded(session, RemediationRow, row_id, token)
            if live is None:
                return
            self._apply(session, live, acted, now)
            leases.release(live)

    def _act(
        self,
        row: RemediationRow,
        node: NodeRow,
        cluster: ClusterRow,
        host_driver: str | None,
        now: datetime,
    ) -> Acted:
        acted = Acted()
        drivers = self.ctx.drivers
        try:
            if row.state == S.QUARANTINING:
                drained = drivers.flavour(cluster.cluster_type, host_driver).drain(
                    drain_spec(row, cluster, node), row.step_state, now
                )
                acted.drain_state, acted.drain_done = drained.state, drained.done
                acted.failed = (drained.message or "the drain failed") if drained.failed else None
            elif (
                row.state == S.QUARANTINED
                and RemediationMode(row.mode) in IN_PLACE
                and node.provider_state is not None
            ):
                spec = instance_spec(cluster, node, host_driver)
                kind = REBOOT_KIND[RemediationMode(row.mode)]
                rebooted = drivers.host(spec.driver).reboot(spec, node.provider_state, kind, now)
                acted.reboot_state = rebooted.state
                acted.failed = (
                    (rebooted.message or "the reboot failed") if rebooted.failed else None
                )
        except PermanentProviderError as exc:
            acted.failed = exc.message
        return acted

    def _apply(self, session: Session, row: RemediationRow, acted: Acted, now: datetime) -> None:
        if row.state in TERMINAL or row.state == S.PENDING_APPROVAL:
            row.next_reconcile_at = None
            return
        node = session.get(NodeRow, row.node_row_id)
        cluster = session.get(ClusterRow, row.cluster_id)
        assert node is not None and cluster is not None
        if acted.drain_state is not None:
            row.step_state = acted.drain_state
        if acted.failed is not None and row.state in (S.QUARANTINING, S.QUARANTINED):
            self._driver_failed(session, row, cluster, node, acted, now)
            return
        target = session.get(NodeRow, row.replacement_node_row_id or "")
        grace = timedelta(seconds=self.ctx.settings.engine.remediation_grace_seconds)
        starts_at = (row.review_time or row.create_time) + grace
        verification = self._verification(session, row, target, now)
        facts = ExecutionFacts(
            cluster_deleting=cluster.delete_requested_at is not None,
            grace_over=now >= starts_at,
            may_start=row.state != S.PENDING
            or now < starts_at
            or self._may_start(session, row, cluster),
            verified=verification == CheckState.PASSED,
            verification_failed=verification == CheckState.FAILED,
            node_gone=node.deleted_at is not None or node.marked_for_deletion,
            drain_done=acted.drain_done,
            target_running=target is not None and target.phase == NodePhase.RUNNING,
            target_gone=target is not None
            and (target.deleted_at is not None or target.marked_for_deletion),
            old_node_gone=node.deleted_at is not None,
        )
        following = next_execution_state(S(row.state), RemediationMode(row.mode), facts)
        if following == S.FAILED and verification == CheckState.FAILED:
            row.error_message = "the repaired node failed its verification check"
        if following is not None:
            self._enter(session, row, cluster, node, following, acted, now)
            if row.state in TERMINAL:
                self._finished(session, row, cluster, node, now)
        if row.state in TERMINAL:
            row.next_reconcile_at = None
        elif row.state == S.PENDING and now < starts_at:
            row.next_reconcile_at = starts_at
        else:
            row.next_reconcile_at = now + POLL

    def _driver_failed(
        self,
        session: Session,
        row: RemediationRow,
        cluster: ClusterRow,
        node: NodeRow,
        acted: Acted,
        now: datetime,
    ) -> None:
        """The flavour could not drain, or the host driver reboot: the repair fails with
        the driver's message."""
        row.error_message = acted.failed
        self._enter(session, row, cluster, node, S.FAILED, acted, now)
        self._finished(session, row, cluster, node, now)
        row.next_reconcile_at = None

    def _may_start(self, session: Session, row: RemediationRow, cluster: ClusterRow) -> bool:
        """The rails: the fleet-wide and per-project caps, and the cluster's stop rule for
        auto-approved ones."""
        settings = self.ctx.settings.health
        hosts = int(session.scalar(select(func.count()).select_from(HostRow)) or 0)
        repairing = select(func.count()).select_from(RemediationRow)
        repairing = repairing.where(RemediationRow.state.in_(REPAIRING))
        fleet_cap = rails.fleet_cap(hosts, settings.max_fleet_remediation_share)
        if int(session.scalar(repairing) or 0) >= fleet_cap:
            return False
        of_project = repairing.join(ClusterRow, ClusterRow.id == RemediationRow.cluster_id).where(
            ClusterRow.project_id == cluster.project_id
        )
        project_cap = rails.project_cap(settings.max_project_repairs, fleet_cap)
        if int(session.scalar(of_project) or 0) >= project_cap:
            return False
        if row.trigger != RemediationTrigger.AUTOMATED or row.reviewed_by != health.AUTO_APPROVED:
            return True  # a person asked for or approved this repair
        unhealthy, workers = health.worker_health(session, cluster.id)
        return not rails.over_stop_rule(unhealthy, workers, settings.max_unhealthy_share)

    def _verification(
        self, session: Session, row: RemediationRow, target: NodeRow | None, now: datetime
    ) -> CheckState | None:
        """Where the repaired node's verification check stands; starts it once it runs."""
        if row.state != S.RUNNING or target is None or target.phase != NodePhase.RUNNING:
            return None
        if row.verification_run_id is not None:
            run = session.get(HealthCheckRunRow, row.verification_run_id)
            return CheckState(run.state) if run is not None else CheckState.FAILED
        host = session.get(HostRow, target.host_id or "")
        if host is None:
            return CheckState.FAILED  # unknown state fails closed
        run = check_runs.start_check(
            session,
            self.ctx.settings,
            host,
            kind=CheckKind.DCGM_DIAG,
            level=VERIFY_LEVEL,
            purpose=CheckPurpose.VERIFICATION,
            now=now,
            node=target,
            remediation_id=row.id,
        )
        row.verification_run_id = run.id
        return CheckState.RUNNING

    def _finished(
        self,
        session: Session,
        row: RemediationRow,
        cluster: ClusterRow,
        node: NodeRow,
        now: datetime,
    ) -> None:
        """Signals and health after a repair ends; the cluster looks at its status again."""
        cluster.next_reconcile_at = now
        mode = RemediationMode(row.mode)
        if row.state == S.SUCCEEDED and (mode in IN_PLACE or mode == RemediationMode.VM_ONLY):
            recovery.resolve_events(
                session,
                recovery.open_events_of_node(session, node.id),
                now,
                why=f"repair {row.id} passed its verification check",
            )
        target = session.get(NodeRow, row.replacement_node_row_id or "")
        for candidate in {node.id: node, **({target.id: target} if target else {})}.values():
            recovery.heal_if_clear(session, candidate, now)
        for event in session.scalars(
            select(HealthEventRow).where(
                HealthEventRow.remediation_id == row.id, HealthEventRow.resolved_at.is_(None)
            )
        ):
            event.next_reconcile_at = now

    def _enter(
        self,
        session: Session,
        row: RemediationRow,
        cluster: ClusterRow,
        node: NodeRow,
        state: RemediationState,
        acted: Acted,
        now: datetime,
    ) -> None:
        message = f"{row.state} -> {state}"
        if state == S.QUARANTINING:
            row.start_time = now
            if node.cordoned_by is None:
                node.cordoned_by = health.CORDONED_BY_US
        if state == S.FAILED and row.error_message:
            message = f"{row.state} -> FAILED: {row.error_message}"
        if state == S.RUNNING:
            error = repairs.perform(
                session, row, cluster, node, reboot_state=acted.reboot_state, now=now
            )
            if error is not None:
                state, row.error_message = S.FAILED, error
                message = f"{row.state} -> FAILED: {error}"
        if state in NODE_STATUS and node.deleted_at is None:
            node.status = NODE_STATUS[state]
        if state in TERMINAL:
            row.end_time = now
        row.state = state
        row.update_time = now
        record_event(
            session,
            object_type="remediation",
            object_id=row.id,
            kind="state",
            message=message,
            at=now,
            scope=cluster_scope(cluster, row.node_row_id),
        )

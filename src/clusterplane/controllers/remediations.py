"""The remediation controller: executes approved repairs, one step per pass.

PENDING (for the grace period) -> QUARANTINING (the node is cordoned; the driver's drain
step runs) -> QUARANTINED -> RUNNING (the mode is carried out by `services.repairs`; the cluster
controller boots or tears down instances) -> SUCCEEDED when the repaired or replacement
node runs (or the evicted node is gone), FAILED with `error_message` when the mode
cannot be carried out, CANCELLED when the cluster or node goes away first. Decisions are
the pure `domain.remediation.next_execution_state`.
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
from clusterplane.providers.models import ClusterStepSpec, DriverState
from clusterplane.services import check_runs, faults, health, recovery, repairs
from clusterplane.services.events import record_event

from .base import ControllerContext
from .clusters import instance_spec

POLL = timedelta(seconds=5)
DRAIN_STEP = "REMEDIATION_DRAIN"
S = RemediationState
NODE_STATUS = {S.QUARANTINING: "Cordoning", S.QUARANTINED: "Drained"}
REPAIRING = (S.QUARANTINING, S.QUARANTINED, S.RUNNING)
# The check a repaired node must pass before it serves again: DCGM level 2 (MEDIUM).
VERIFY_LEVEL = 2


@dataclass
class Acted:
    drain_state: DriverState | None = None
    drain_done: bool = False
    reboot_state: DriverState | None = None


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
            session.expunge_all()
        if row is None or node is None or cluster is None:
            return
        now = self.ctx.clock.now()
        acted = self._act(row, node, cluster, now)
        with transaction(self.ctx.sessions) as session:
            live = leases.load_guarded(session, RemediationRow, row_id, token)
            if live is None:
                return
            self._apply(session, live, acted, now)
            leases.release(live)

    def _act(self, row: RemediationRow, node: NodeRow, cluster: ClusterRow, now: datetime) -> Acted:
        acted = Acted()
        provider = self.ctx.provider
        if row.state == S.QUARANTINING:
            step = ClusterStepSpec(
                cluster_id=row.id, kind=DRAIN_STEP, region=cluster.region, num_nodes=1
            )
            state = row.step_state
            if state is None or state.get("kind") != DRAIN_STEP:
                state = provider.start_step(step, now)
            polled = provider.poll_step(step, state, now)
            acted.drain_state, acted.drain_done = polled.state, polled.done
        elif (
            row.state == S.QUARANTINED
            and RemediationMode(row.mode) in IN_PLACE
            and node.provider_state is not None
        ):
            spec = instance_spec(cluster, node)
            acted.reboot_state = provider.reboot_instance(spec, node.provider_state, now)
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
        if state == S.RUNNING:
            error = repairs.perform(
                session, row, cluster, node, reboot_state=acted.reboot_state, now=now
            )
            if error is not None:
                state, row.error_message = S.FAILED, error
                message = f"{row.state} -> FAILED: {error}"
            elif node.host_id and RemediationMode(row.mode) in (*IN_PLACE, RemediationMode.VM_ONLY):
                faults.apply_repair(session, node.host_id, RemediationMode(row.mode), now)
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
        )

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

from sqlalchemy.orm import Session

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import ClusterRow, NodeRow, RemediationRow
from clusterplane.domain.enums import NodePhase, RemediationMode, RemediationState
from clusterplane.domain.remediation import (
    IN_PLACE,
    TERMINAL,
    ExecutionFacts,
    next_execution_state,
)
from clusterplane.providers.models import ClusterStepSpec, DriverState
from clusterplane.services import repairs
from clusterplane.services.events import record_event

from .base import ControllerContext
from .clusters import instance_spec

POLL = timedelta(seconds=5)
DRAIN_STEP = "REMEDIATION_DRAIN"
S = RemediationState
NODE_STATUS = {S.QUARANTINING: "Cordoning", S.QUARANTINED: "Drained"}


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
        facts = ExecutionFacts(
            cluster_deleting=cluster.delete_requested_at is not None,
            grace_over=now >= starts_at,
            node_gone=node.deleted_at is not None or node.marked_for_deletion,
            drain_done=acted.drain_done,
            target_running=target is not None and target.phase == NodePhase.RUNNING,
            target_gone=target is not None
            and (target.deleted_at is not None or target.marked_for_deletion),
            old_node_gone=node.deleted_at is not None,
        )
        following = next_execution_state(S(row.state), RemediationMode(row.mode), facts)
        if following is not None:
            self._enter(session, row, cluster, node, following, acted, now)
        if row.state in TERMINAL:
            row.next_reconcile_at = None
        elif row.state == S.PENDING and now < starts_at:
            row.next_reconcile_at = starts_at
        else:
            row.next_reconcile_at = now + POLL

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
        )

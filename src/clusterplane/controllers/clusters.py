"""The cluster lifecycle controller: brings clusters up, scales them, tears them down.

One pass over one leased cluster:
  snapshot  the cluster, its live nodes and volumes, as plain values;
  act       driver calls for every node (launch, describe, terminate) and for the
            cluster-level step of the current phase (start or poll);
  apply     in one transaction guarded by the lease token: node phases and history,
            hosts returned to the fleet, the cluster's next phase (`domain.lifecycle`),
            when to look again, and the lease released.
Crashing anywhere repeats at most the driver calls of this pass, which are idempotent.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db import leases
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import (
    ClusterRow,
    HostRow,
    NodePhaseTransitionRow,
    NodeRow,
    RemediationRow,
)
from clusterplane.domain import lifecycle
from clusterplane.domain.enums import (
    ClusterPhase,
    HostState,
    NodeLifecycleReason,
    NodePhase,
    NodeRole,
    RemediationState,
    VolumeStatus,
)
from clusterplane.domain.lifecycle import node_status
from clusterplane.providers.models import HostSpec
from clusterplane.services.agents.node_access import node_access
from clusterplane.services.capacity.allocation import GPUS_PER_NODE, next_ordinal, release_host
from clusterplane.services.capacity.calendar import wind_down_at
from clusterplane.services.capacity.claims import (
    START_LEAD,
    Claim,
    claim_workers,
    fulfil_preemptible,
    note_waiting,
)
from clusterplane.services.clusters import addons, volumes
from clusterplane.services.events.events import (
    cluster_scope,
    node_lifecycle_event,
    record_event,
    refresh_node_status,
    set_cluster_phase,
    set_node_phase,
    write_node_transitions,
)
from clusterplane.services.health import acceptance, check_runs, remediations

from .base import ControllerContext
from .cluster_act import (
    TESTS_REACHABLE_FROM,
    UNCHANGED,
    ClusterActor,
    NodeOutcome,
    Outcome,
    Snapshot,
    StepOutcome,
    workers_of,
)
from .node_views import LiveNode, NodeWrites, live_nodes, view_of

POLL = timedelta(seconds=5)
JOIN_EVENTS = {
    "scale_up": (NodeLifecycleReason.SCALED_UP, "node joined by scale-up"),
    "replacement": (NodeLifecycleReason.NODE_ADDED, "node joined to replace a repaired node"),
}
LEAVE_EVENTS = {
    "scale_down": (NodeLifecycleReason.SCALED_DOWN, "node removed by scale-down"),
    "preempted": (NodeLifecycleReason.PREEMPTED, "preemptible node taken back after its drain"),
}
# How often a cluster short of preemptible nodes looks for idle capacity again.
FULFIL_POLL = timedelta(seconds=30)
# How long after a flavour failed to apply config it is asked again.
CONFIG_RETRY = timedelta(seconds=60)


def _have_run(session: Session, node_ids: list[str]) -> set[str]:
    """Which of these nodes have been RUNNING before (a reboot is not a join): one query."""
    if not node_ids:
        return set()
    return set(
        session.scalars(
            select(NodePhaseTransitionRow.node_row_id)
            .where(
                NodePhaseTransitionRow.node_row_id.in_(node_ids),
                NodePhaseTransitionRow.phase == NodePhase.RUNNING,
            )
            .distinct()
        )
    )


P = ClusterPhase
# A test phase -> the phase it fails into; a failed phase -> the tests it runs again once
# the replacements of the failing workers run.
TEST_PHASES = {
    P.RUNNING_ACCEPTANCE_TESTS: P.ACCEPTANCE_TESTS_FAILED,
    P.RUNNING_NCCL_TESTS: P.NCCL_TESTS_FAILED,
}
RETEST = {failed: tests for tests, failed in TEST_PHASES.items()}
REPAIRING = (
    RemediationState.QUARANTINING,
    RemediationState.QUARANTINED,
    RemediationState.RUNNING,
)


def _degraded(session: Session, cluster_id: str, workers: list[LiveNode]) -> bool:
    """Whether a serving worker is unhealthy or a repair of the cluster is under way."""
    if any(n.health == "unhealthy" or n.phase == NodePhase.FAILED for n in workers):
        return True
    repairing = session.scalar(
        select(RemediationRow.id)
        .where(RemediationRow.cluster_id == cluster_id, RemediationRow.state.in_(REPAIRING))
        .limit(1)
    )
    return repairing is not None


def _sequence(cluster: ClusterRow, has_volume: bool, workers: int) -> tuple[ClusterPhase, ...]:
    tests = cluster.acceptance_tests_params or {}
    enabled = bool(tests.get("enabled", False))
    nccl = enabled and workers > 1 and not tests.get("nccl_multi_node_skipped", False)
    return lifecycle.bring_up_sequence(
        has_volume=has_volume, acceptance_tests=enabled, nccl_tests=nccl
    )


def _facts_after(snap: Snapshot, outcome: Outcome) -> lifecycle.BringUpFacts:
    """The bring-up facts as this pass's node outcomes leave them, counted as `_advance`
    counts them (a failed node is FAILED, a terminated one gone); no step done yet."""
    results = {r.node_id: r for r in outcome.nodes}

    def phase(node: LiveNode) -> str | None:
        result = results.get(node.id)
        if result is None:
            return node.phase
        if result.failed is not None:
            return NodePhase.FAILED
        return None if result.terminated else (result.phase or node.phase)

    cp = [p for n in snap.nodes if n.role == NodeRole.CONTROL_PLANE and (p := phase(n))]
    workers = [p for n in workers_of(snap.nodes) if (p := phase(n))]
    return lifecycle.BringUpFacts(
        control_plane_running=bool(cp) and all(p == NodePhase.RUNNING for p in cp),
        workers_running=len(workers) >= snap.cluster.num_gpus // GPUS_PER_NODE
        and all(p == NodePhase.RUNNING for p in workers),
        volume_ready=snap.volumes_ready,
        step_done=False,
    )


def _plain(node: LiveNode, result: NodeOutcome) -> bool:
    """Whether the outcome only changes the node's driver state, flavour state and phase
    (no failure, no leaving, no join to tell of): what `_changed` writes set-based."""
    joins = (
        result.phase == NodePhase.RUNNING
        and node.phase != NodePhase.RUNNING
        and node.origin in JOIN_EVENTS
    )
    return result.failed is None and not result.terminated and not joins


def _changed(
    node: LiveNode,
    result: NodeOutcome,
    now: datetime,
    writes: NodeWrites,
    transitions: list[dict[str, Any]],
) -> LiveNode:
    """`_apply_node` for a plain outcome: the columns it changes (none that equal the
    stored ones), and a phase transition if the phase moved."""
    changes: dict[str, Any] = {}
    if result.state is not None and result.state != node.provider_state:
        changes["provider_state"] = result.state
    if result.flavour_state is not UNCHANGED and result.flavour_state != node.flavour_state:
        changes["flavour_state"] = result.flavour_state
    if result.phase is not None and result.phase != node.phase:
        changes["phase"] = result.phase
        status = node_status(
            NodePhase(result.phase),
            marked_for_deletion=node.marked_for_deletion,
            deleted=False,
            cordoned=node.cordoned_by is not None,
        )
        if status != node.status:
            changes["status"] = status
        transitions.append({"node_row_id": node.id, "phase": result.phase, "transition_time": now})
    return writes.change(node, **changes)


class ClusterController:
    name = "clusters"
    row_type = ClusterRow

    def __init__(self, ctx: ControllerContext):
        self.ctx = ctx

    def reconcile(self, row_id: str, token: str) -> None:
        snapshot = self._snapshot(row_id)
        if snapshot is None:
            return
        now = self.ctx.clock.now()
        outcome = self._act(snapshot, now)
        with transaction(self.ctx.sessions) as session:
            cluster = leases.load_guarded(session, ClusterRow, row_id, token)
            if cluster is None:
                return  # our lease was taken over; the new holder redoes this pass
            self._apply(session, cluster, outcome, now)
            leases.release(cluster)

    # -- snapshot ----------------------------------------------------------------------

    def _snapshot(self, row_id: str) -> Snapshot | None:
        # A read snapshot: it neither waits for nor holds up the writer.
        with read_transaction(self.ctx.sessions) as session:
            cluster = session.get(ClusterRow, row_id)
            if cluster is None or cluster.deleted_at is not None:
                return None
            nodes = live_nodes(session, row_id)
            vols = volumes.volumes_of(session, [row_id])
            ready = all(v.status in (VolumeStatus.AVAILABLE, VolumeStatus.BOUND) for v in vols)
            workers = sum(1 for n in nodes if n.role == NodeRole.GPU_WORKER)
            snap = Snapshot(cluster, nodes, ready, _sequence(cluster, bool(vols), workers))
            snap.access = node_access(cluster, vols)
            self._load_hosts(session, snap)
            session.expunge_all()
        return snap

    @staticmethod
    def _load_hosts(session: Session, snap: Snapshot) -> None:
        """Who manages each node's host; in a phase from which this pass may take a test
        step, also the workers' hosts as their driver knows them (`HostSpec`, read as
        columns: no ORM rows for thousands of hosts).

        The cluster's hosts are found by their `cluster_id` (one indexed parameter, however
        large the cluster); a node whose host is not the cluster's any more by its id."""
        ids = {n.host_id for n in snap.nodes if n.host_id}
        if not ids:
            return
        if ClusterPhase(snap.cluster.phase) in TESTS_REACHABLE_FROM:
            snap.tests_possible = True
            hosts = session.execute(
                select(
                    HostRow.id,
                    HostRow.name,
                    HostRow.region,
                    HostRow.gpu_type,
                    HostRow.num_gpus,
                    HostRow.driver,
                ).where(HostRow.cluster_id == snap.cluster.id)
            )
            snap.hosts = {
                host_id: HostSpec(
                    host_name=name,
                    region=region,
                    gpu_type=gpu_type,
                    num_gpus=num_gpus,
                    driver=driver,
                    host_id=host_id,
                )
                for host_id, name, region, gpu_type, num_gpus, driver in hosts
                if host_id in ids
            }
            snap.host_drivers = {h.host_id: h.driver for h in snap.hosts.values()}
        else:
            rows = session.execute(
                select(HostRow.id, HostRow.driver).where(HostRow.cluster_id == snap.cluster.id)
            )
            snap.host_drivers = {host_id: driver for host_id, driver in rows}
        missing = ids - set(snap.host_drivers)
        if missing:
            rows = session.execute(
                select(HostRow.id, HostRow.driver).where(HostRow.id.in_(sorted(missing)))
            )
            snap.host_drivers.update({host_id: driver for host_id, driver in rows})

    # -- act ---------------------------------------------------------------------------

    def _act(self, snap: Snapshot, now: datetime) -> Outcome:
        cluster = snap.cluster
        deleting = cluster.delete_requested_at is not None
        outcome = Outcome(deleting=deleting)
        actor = ClusterActor(self.ctx.drivers)
        for node in snap.nodes:
            leaving = deleting or node.marked_for_deletion
            if leaving and not deleting and node.drain_until is not None and now < node.drain_until:
                continue  # a preempted node serves until its drain window closes
            if not leaving and node.phase == NodePhase.FAILED:
                continue  # failed: nothing is asked of it until it is repaired or removed
            launch = leaving or self._may_launch(cluster, node, snap.sequence)
            result = actor.node(snap, node, now, launch=launch)
            if result.state is not None or result.terminated or result.failed:
                outcome.nodes.append(result)
        facts = _facts_after(snap, outcome)
        reached = lifecycle.phase_reached(snap.sequence, ClusterPhase(cluster.phase), facts)
        actor.steps(snap, reached, facts, outcome, now)
        phase = ClusterPhase(cluster.phase)
        desired = addons.desired_config(
            cluster.add_ons, cluster.cluster_config, cluster.credentials
        )
        if not deleting and phase in lifecycle.STEADY_PHASES and desired != cluster.applied_config:
            actor.config(snap, desired, outcome, now)
        return outcome

    @staticmethod
    def _may_launch(cluster: ClusterRow, node: LiveNode, seq: tuple[ClusterPhase, ...]) -> bool:
        phase = ClusterPhase(cluster.phase)
        if phase == P.SCHEDULED:
            return False  # a reservation launches nothing before its window opens
        if node.role == NodeRole.CONTROL_PLANE:
            # Queued too: a pass that sees QUEUED always leaves it (`phase_complete`), so
            # the control plane boots in that pass instead of waiting for the next one.
            return True
        return lifecycle.workers_may_launch(phase, seq)

    # -- apply -------------------------------------------------------------------------

    def _apply(
        self, session: Session, cluster: ClusterRow, outcome: Outcome, now: datetime
    ) -> None:
        # The cluster's live nodes as columns (and, when some terminated, its hosts) in one
        # query each; plain changes are written set-based, the rest through ORM rows.
        live = {n.id: n for n in live_nodes(session, cluster.id)}
        # The session holds its rows weakly: `loaded` keeps these in it until the end.
        leaving = any(r.terminated for r in outcome.nodes)
        loaded: list[Any] = []
        if leaving:
            loaded += session.scalars(select(HostRow).where(HostRow.cluster_id == cluster.id))
        loaded += _load_node_rows(
            session,
            [
                r.node_id
                for r in outcome.nodes
                if r.node_id in live and not _plain(live[r.node_id], r)
            ],
        )
        waiting = remediations.nodes_with_waiting_repairs(session, cluster.id) if leaving else set()
        # Only a node that joins (a scale-up, a replacement) is told apart from a reboot.
        ran = _have_run(
            session,
            [
                r.node_id
                for r in outcome.nodes
                if r.phase == NodePhase.RUNNING
                and r.node_id in live
                and live[r.node_id].phase != NodePhase.RUNNING
                and live[r.node_id].origin in JOIN_EVENTS
            ],
        )
        progressed = False
        transitions: list[dict[str, Any]] = []
        writes = NodeWrites()
        for result in outcome.nodes:
            node = live.get(result.node_id)
            if node is None:
                continue
            if _plain(node, result):
                live[node.id] = _changed(node, result, now, writes, transitions)
                progressed |= live[node.id].phase != node.phase
                continue
            row = session.get_one(NodeRow, node.id)
            progressed |= self._apply_node(
                session, cluster, row, result, now, ran, transitions, waiting
            )
            if row.deleted_at is None:
                live[node.id] = view_of(row)
            else:
                del live[node.id]
        writes.write(session)
        write_node_transitions(session, transitions)
        nodes = list(live.values())
        if cluster.delete_requested_at is not None:
            # A deletion requested while this pass ran is acted on next, not after POLL.
            self._apply_deleting(session, cluster, nodes, now, progressed or not outcome.deleting)
            return
        step_done = self._record_step(session, cluster, outcome.step_for(cluster.phase), now)
        self._advance(session, cluster, nodes, outcome, now, progressed, step_done)
        self._record_applied(session, cluster, outcome, now)

    @staticmethod
    def _record_step(
        session: Session, cluster: ClusterRow, step: StepOutcome | None, now: datetime
    ) -> bool:
        """The step of the cluster's phase this pass started or polled, in the controller's
        own columns; whether it is done (and did not fail)."""
        if step is None or cluster.phase != step.phase:
            return False  # the phase moved on (or nothing was asked): the outcome is stale
        cluster.step_state = step.state
        if step.started:
            cluster.step_phase, cluster.step_started_at = step.phase, now
            cluster.step_error = None
        if step.failed is not None and cluster.step_error is None:
            cluster.step_error = step.failed
            record_event(
                session,
                object_type="cluster",
                object_id=cluster.id,
                kind="step_failed",
                message=f"{step.phase} failed: {step.failed}",
                at=now,
                scope=cluster_scope(cluster),
            )
        return step.done and cluster.step_error is None

    @staticmethod
    def _record_applied(
        session: Session, cluster: ClusterRow, outcome: Outcome, now: datetime
    ) -> None:
        if outcome.config_failed is not None:
            record_event(
                session,
                object_type="cluster",
                object_id=cluster.id,
                kind="config_failed",
                message=f"add-ons and config not applied: {outcome.config_failed}",
                at=now,
                scope=cluster_scope(cluster),
            )
            cluster.next_reconcile_at = now + CONFIG_RETRY
            return
        if outcome.applied is not None:
            cluster.applied_config = outcome.applied
            names = ", ".join(a["name"] for a in outcome.applied["add_ons"]) or "none"
            record_event(
                session,
                object_type="cluster",
                object_id=cluster.id,
                kind="config_applied",
                message=f"add-ons applied: {names}",
                at=now,
                scope=cluster_scope(cluster),
            )
        steady = ClusterPhase(cluster.phase) in lifecycle.STEADY_PHASES
        desired = addons.desired_config(
            cluster.add_ons, cluster.cluster_config, cluster.credentials
        )
        if steady and desired != cluster.applied_config:
            cluster.next_reconcile_at = now  # changed while this pass ran: apply it next

    def _apply_node(
        self,
        session: Session,
        cluster: ClusterRow,
        node: NodeRow,
        result: NodeOutcome,
        now: datetime,
        ran: set[str],
        transitions: list[dict[str, Any]],
        waiting: set[str],
    ) -> bool:
        """Record one node's outcome; True if it moved (a new phase, failed, or gone).
        A driver state equal to the stored one is not set again: the node stays clean,
        and the flush skips it (most nodes, on most passes)."""
        if result.state is not None and result.state != node.provider_state:
            node.provider_state = result.state
        if result.flavour_state is not UNCHANGED and result.flavour_state != node.flavour_state:
            node.flavour_state = result.flavour_state
        if result.failed is not None:
            return self._fail_node(session, cluster, node, result.failed, now)
        if result.terminated:
            self._gone(session, cluster, node, now, transitions, waiting)
            return True
        if result.phase is None or result.phase == node.phase:
            return False
        first_run = result.phase == NodePhase.RUNNING and node.id not in ran
        set_node_phase(session, node, result.phase, now, batch=transitions)
        if first_run and node.origin in JOIN_EVENTS:
            reason, message = JOIN_EVENTS[node.origin]
            node_lifecycle_event(
                session,
                cluster_id=cluster.id,
                node_name=node.node_name,
                reason=reason,
                message=message,
                now=now,
            )
        return True

    def _gone(
        self,
        session: Session,
        cluster: ClusterRow,
        node: NodeRow,
        now: datetime,
        transitions: list[dict[str, Any]],
        waiting: set[str],
    ) -> None:
        """The node's host is released: the node is deleted and its host goes back; its
        waiting repairs (`waiting`: the nodes that have one) are cancelled."""
        set_node_phase(session, node, NodePhase.SUCCEEDED, now, batch=transitions)
        node.deleted_at = now
        refresh_node_status(node)
        quarantine = node.removal_reason == "quarantined"
        release_host(session, node, cluster.id, now, quarantine=quarantine)
        if node.id in waiting:
            remediations.close_left_behind(
                session, cluster_id=cluster.id, node_row_id=node.id, why="the node left", now=now
            )
        host = session.get(HostRow, node.host_id) if quarantine and node.host_id else None
        if host is not None and host.state == HostState.QUARANTINED:
            check_runs.schedule_host_repair(session, self.ctx.settings, host, now)
        leaving = LEAVE_EVENTS.get(node.removal_reason or "")
        if leaving is not None and cluster.delete_requested_at is None:
            node_lifecycle_event(
                session,
                cluster_id=cluster.id,
                node_name=node.node_name,
                reason=leaving[0],
                message=leaving[1],
                now=now,
            )

    @staticmethod
    def _fail_node(
        session: Session, cluster: ClusterRow, node: NodeRow, message: str, now: datetime
    ) -> bool:
        """The driver failed the node: NODE_PHASE_FAILED, and the reason as an event."""
        if node.phase == NodePhase.FAILED:
            return False
        set_node_phase(session, node, NodePhase.FAILED, now)
        record_event(
            session,
            object_type="cluster",
            object_id=cluster.id,
            kind="node_failed",
            message=f"{node.node_name} on {node.host_name}: {message}",
            at=now,
            scope=cluster_scope(cluster, node.id),
        )
        return True

    def _apply_deleting(
        self,
        session: Session,
        cluster: ClusterRow,
        nodes: list[LiveNode],
        now: datetime,
        progressed: bool,
    ) -> None:
        if nodes:
            cluster.next_reconcile_at = now if progressed else now + POLL
            return
        volumes.detach_all(session, cluster.id, now)
        remediations.close_left_behind(
            session, cluster_id=cluster.id, node_row_id=None, why="the cluster was deleted", now=now
        )
        cluster.deleted_at = now
        cluster.next_reconcile_at = None
        cluster.updated_at = now
        record_event(
            session,
            object_type="cluster",
            object_id=cluster.id,
            kind="deleted",
            message="teardown complete; hosts returned to the fleet",
            at=now,
            scope=cluster_scope(cluster),
        )

    def _advance(
        self,
        session: Session,
        cluster: ClusterRow,
        nodes: list[LiveNode],
        outcome: Outcome,
        now: datetime,
        progressed: bool,
        step_done: bool,
    ) -> None:
        end, why = wind_down_at(session, cluster)
        if end is not None and now >= end:
            self._end_reservation(session, cluster, now, why)
            return
        phase = ClusterPhase(cluster.phase)
        drain = self.ctx.settings.engine.preemption_drain
        if phase == P.SCHEDULED:
            start = cluster.reservation_start_time
            if start is not None and now < start:
                make_room_from = start - drain - START_LEAD
                if now >= make_room_from:
                    # Preempt early, so the hosts are free when the window opens.
                    claim_workers(session, cluster, now, drain=drain, strict=False, take=False)
                    cluster.next_reconcile_at = min(start, now + POLL)
                else:
                    cluster.next_reconcile_at = make_room_from
                return
            set_cluster_phase(session, cluster, P.QUEUED, now)
            phase = P.QUEUED
        staying = sum(
            n.role == NodeRole.GPU_WORKER and not n.preemptible and not n.marked_for_deletion
            for n in nodes
        )
        short = staying < cluster.num_gpus // GPUS_PER_NODE
        claim = (
            claim_workers(session, cluster, now, drain=drain, strict=False) if short else Claim([])
        )
        if claim.added:
            nodes = live_nodes(session, cluster.id)
            progressed = True
        if claim.waiting is not None and claim.preempting == 0:
            note_waiting(session, cluster, claim.waiting, now)
        entered = phase
        cp = [n for n in nodes if n.role == NodeRole.CONTROL_PLANE]
        workers = [
            n
            for n in nodes
            if n.role == NodeRole.GPU_WORKER and not n.marked_for_deletion and not n.preemptible
        ]
        cp_running = bool(cp) and all(n.phase == NodePhase.RUNNING for n in cp)
        if cp_running and not cluster.control_plane_ready:
            cluster.control_plane_ready = True
        vols = volumes.volumes_of(session, [cluster.id])
        sequence = _sequence(cluster, bool(vols), len(workers))
        facts = lifecycle.BringUpFacts(
            control_plane_running=cp_running,
            workers_running=len(workers) >= cluster.num_gpus // 8
            and all(n.phase == NodePhase.RUNNING for n in workers),
            volume_ready=all(
                v.status in (VolumeStatus.AVAILABLE, VolumeStatus.BOUND) for v in vols
            ),
            step_done=step_done and cluster.step_phase == phase,
        )
        own = outcome.step_for(phase)
        if facts.step_done and self._tests_failed(session, cluster, workers, own, now):
            return
        if phase in RETEST and facts.workers_running:
            set_cluster_phase(session, cluster, RETEST[phase], now)
            cluster.step_state = None
            phase = RETEST[phase]
            facts = lifecycle.BringUpFacts(
                facts.control_plane_running, True, facts.volume_ready, step_done=False
            )
        while phase not in lifecycle.STEADY_PHASES and lifecycle.phase_complete(phase, facts):
            following = lifecycle.phase_after(sequence, phase)
            if following is None:
                break
            set_cluster_phase(session, cluster, following, now)
            cluster.step_state = None
            # A step this pass already took for the phase it just entered (`steps`).
            ahead = outcome.step_for(following)
            done = self._record_step(session, cluster, ahead, now)
            if done and self._tests_failed(session, cluster, workers, ahead, now):
                return
            facts = replace(facts, step_done=done)
            phase = following
            if following == P.READY and cluster.first_ready_at is None:
                cluster.first_ready_at = now
        if phase in lifecycle.STEADY_PHASES and fulfil_preemptible(
            session, cluster, now, drain=drain
        ):
            progressed = True
            nodes = live_nodes(session, cluster.id)
        if phase in lifecycle.STEADY_PHASES:
            steady = lifecycle.steady_phase(degraded=_degraded(session, cluster.id, workers))
            if steady != phase:
                set_cluster_phase(session, cluster, steady, now)
                phase = steady
        moved = progressed or phase != entered
        due = self._next_due(cluster, nodes, phase, now, moved, end)
        if claim.waiting is not None:
            due = min(due or now + POLL, now + POLL)
        elif phase in lifecycle.STEADY_PHASES and self._short_of_preemptible(cluster, nodes):
            due = min(due or now + FULFIL_POLL, now + FULFIL_POLL)
        cluster.next_reconcile_at = due

    @staticmethod
    def _short_of_preemptible(cluster: ClusterRow, nodes: list[LiveNode]) -> bool:
        live = sum(n.preemptible and not n.marked_for_deletion for n in nodes)
        return live * 8 < cluster.desired_preemptible_gpus

    def _tests_failed(
        self,
        session: Session,
        cluster: ClusterRow,
        workers: list[LiveNode],
        step: StepOutcome | None,
        now: datetime,
    ) -> bool:
        """After a done test step, judge the workers; exclude and replace those that failed,
        and the cluster goes to the phase its tests fail into."""
        phase = ClusterPhase(cluster.phase)
        if step is None or phase not in TEST_PHASES:
            return False
        settings = self.ctx.settings
        failed = acceptance.failing_workers(session, cluster, workers, step.checks, now)
        for node, run in failed:
            ordinal = next_ordinal(session, cluster.id)
            row = session.get_one(NodeRow, node.id)
            acceptance.exclude_and_replace(session, settings, cluster, row, run, ordinal, now)
        if not failed:
            return False
        set_cluster_phase(session, cluster, TEST_PHASES[phase], now)
        cluster.step_state = None
        cluster.next_reconcile_at = now
        return True

    @staticmethod
    def _next_due(
        cluster: ClusterRow,
        nodes: list[LiveNode],
        phase: ClusterPhase,
        now: datetime,
        moved: bool,
        end: datetime | None,
    ) -> datetime | None:
        """When to look again: at once after a pass that moved something (what it moved
        may unblock the next step: launch workers, start a step), in `POLL` while waiting
        on the driver, at the reservation's end once all is steady."""
        busy = phase not in lifecycle.STEADY_PHASES or any(
            n.phase != NodePhase.RUNNING or n.marked_for_deletion for n in nodes
        )
        if busy:
            return now if moved else now + POLL
        return end

    @staticmethod
    def _end_reservation(session: Session, cluster: ClusterRow, now: datetime, why: str) -> None:
        record_event(
            session,
            object_type="cluster",
            object_id=cluster.id,
            kind="reservation_ended",
            message=f"{why} ended; the cluster is wound down",
            at=now,
            scope=cluster_scope(cluster),
        )
        cluster.delete_requested_at = now
        cluster.step_state = None
        set_cluster_phase(session, cluster, P.DELETING, now)
        cluster.next_reconcile_at = now


def _load_node_rows(session: Session, ids: list[str], chunk: int = 1000) -> list[NodeRow]:
    """These nodes' ORM rows, loaded into the session in a few queries, not one each (a
    deletion's pass handles every node of the cluster through its row)."""
    rows: list[NodeRow] = []
    for start in range(0, len(ids), chunk):
        rows += session.scalars(select(NodeRow).where(NodeRow.id.in_(ids[start : start + chunk])))
    return rows

"""The cluster and node lifecycle machine: pure decisions, no I/O.

A cluster is brought up through a fixed sequence of phases (which ones depends on what was
asked for); each phase is complete when its facts say so. Once Ready the cluster stays in
its steady phase while nodes come and go. `status` on the wire is a function of the phase.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from clusterplane.domain.enums import ClusterPhase, ClusterStatus, NodePhase

P = ClusterPhase

# Phases that are a single driver step, started on entry and finished when the driver says.
STEP_PHASES = frozenset(
    {
        P.WAITING_FOR_SUBNET,
        P.WAITING_FOR_SHARED_VOLUME,
        P.INSTALLING_DRIVERS,
        P.RUNNING_ACCEPTANCE_TESTS,
        P.RUNNING_NCCL_TESTS,
    }
)
STEADY_PHASES = frozenset({P.READY, P.DEGRADED})

_STATUS_BY_PHASE: dict[ClusterPhase, ClusterStatus] = {
    P.QUEUED: ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES,
    P.SCHEDULED: ClusterStatus.SCHEDULED,
    P.WAITING_FOR_CONTROL_PLANE_NODES: ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES,
    P.WAITING_FOR_DATA_PLANE_NODES: ClusterStatus.WAITING_FOR_DATA_PLANE_NODES,
    P.WAITING_FOR_SUBNET: ClusterStatus.WAITING_FOR_SUBNET,
    P.WAITING_FOR_SHARED_VOLUME: ClusterStatus.WAITING_FOR_SHARED_VOLUME,
    P.WAITING_FOR_AUTO_SCALER: ClusterStatus.WAITING_FOR_DATA_PLANE_NODES,
    P.INSTALLING_DRIVERS: ClusterStatus.INSTALLING_DRIVERS,
    P.RUNNING_ACCEPTANCE_TESTS: ClusterStatus.RUNNING_ACCEPTANCE_TESTS,
    P.ACCEPTANCE_TESTS_FAILED: ClusterStatus.DEGRADED,
    P.RUNNING_NCCL_TESTS: ClusterStatus.RUNNING_ACCEPTANCE_TESTS,
    P.NCCL_TESTS_FAILED: ClusterStatus.DEGRADED,
    P.READY: ClusterStatus.READY,
    P.PAUSED: ClusterStatus.PAUSED,
    P.ON_DEMAND_COMPUTE_PAUSED: ClusterStatus.ON_DEMAND_COMPUTE_PAUSED,
    P.DEGRADED: ClusterStatus.DEGRADED,
    P.DELETING: ClusterStatus.DELETING,
}


def status_for(phase: ClusterPhase) -> ClusterStatus:
    return _STATUS_BY_PHASE[phase]


def bring_up_sequence(
    *, has_volume: bool, acceptance_tests: bool, nccl_tests: bool
) -> tuple[ClusterPhase, ...]:
    """The phases a new cluster walks through, in order, ending at Ready."""
    phases = [
        P.QUEUED,
        P.WAITING_FOR_CONTROL_PLANE_NODES,
        P.WAITING_FOR_SUBNET,
        P.WAITING_FOR_DATA_PLANE_NODES,
    ]
    if has_volume:
        phases.append(P.WAITING_FOR_SHARED_VOLUME)
    phases.append(P.INSTALLING_DRIVERS)
    if acceptance_tests:
        phases.append(P.RUNNING_ACCEPTANCE_TESTS)
        if nccl_tests:
            phases.append(P.RUNNING_NCCL_TESTS)
    phases.append(P.READY)
    return tuple(phases)


@dataclass(frozen=True)
class BringUpFacts:
    """What the controller observed about a cluster that is still being brought up."""

    control_plane_running: bool
    workers_running: bool
    volume_ready: bool
    step_done: bool


def phase_complete(phase: ClusterPhase, facts: BringUpFacts) -> bool:
    if phase == P.QUEUED:
        return True
    if phase == P.WAITING_FOR_CONTROL_PLANE_NODES:
        return facts.control_plane_running
    if phase == P.WAITING_FOR_DATA_PLANE_NODES:
        return facts.workers_running
    if phase == P.WAITING_FOR_SHARED_VOLUME:
        return facts.volume_ready and facts.step_done
    if phase in STEP_PHASES:
        return facts.step_done
    return False


def next_phase(sequence: tuple[ClusterPhase, ...], phase: ClusterPhase) -> ClusterPhase | None:
    """The phase after `phase` in `sequence`, or None at the end or outside it."""
    if phase not in sequence:
        return None
    index = sequence.index(phase)
    return sequence[index + 1] if index + 1 < len(sequence) else None


def phase_after(sequence: tuple[ClusterPhase, ...], phase: ClusterPhase) -> ClusterPhase | None:
    """The phase that follows a completed `phase`.

    Usually `next_phase`. A phase that dropped out of the sequence while the cluster was in
    it (a scale-down to one worker during the NCCL tests, which only run on several) is
    followed by the first phase of the sequence that comes after it in the full bring-up
    order, so the cluster moves on instead of waiting for a successor it no longer has.
    """
    if phase in sequence:
        return next_phase(sequence, phase)
    full = bring_up_sequence(has_volume=True, acceptance_tests=True, nccl_tests=True)
    if phase not in full:
        return None
    return next((p for p in full[full.index(phase) + 1 :] if p in sequence), None)


def phase_reached(
    sequence: tuple[ClusterPhase, ...], phase: ClusterPhase, facts: BringUpFacts
) -> ClusterPhase:
    """Where a cluster in `phase` gets with `facts`: through every phase that is complete,
    to the first that is not (`facts.step_done` is about `phase`'s own step only; a step
    phase entered on the way has not run its step yet)."""
    while phase not in STEADY_PHASES and phase_complete(phase, facts):
        following = phase_after(sequence, phase)
        if following is None:
            break
        phase = following
        facts = replace(facts, step_done=False)
    return phase


def steady_phase(*, degraded: bool) -> ClusterPhase:
    """A running cluster is Degraded while a worker is unhealthy or being repaired."""
    return P.DEGRADED if degraded else P.READY


def workers_may_launch(phase: ClusterPhase, sequence: tuple[ClusterPhase, ...]) -> bool:
    """GPU workers boot once the control plane and subnet exist."""
    if phase in STEADY_PHASES or phase in (P.ACCEPTANCE_TESTS_FAILED, P.NCCL_TESTS_FAILED):
        return True
    if phase not in sequence:
        return False
    return sequence.index(phase) >= sequence.index(P.WAITING_FOR_DATA_PLANE_NODES)


NODE_PHASE_ORDER = (
    NodePhase.PENDING,
    NodePhase.SCHEDULING,
    NodePhase.BOOTING,
    NodePhase.BOOTSTRAPPING,
    NodePhase.RUNNING,
)


def node_status(
    phase: NodePhase, *, marked_for_deletion: bool, deleted: bool, cordoned: bool = False
) -> str:
    """The free-text node `status` the UI shows (Together's wording where known)."""
    if deleted:
        return "Deleted"
    if marked_for_deletion:
        return "Draining"
    if cordoned and phase == NodePhase.RUNNING:
        return "Cordoned"
    return {
        NodePhase.PENDING: "Pending",
        NodePhase.SCHEDULING: "Scheduling",
        NodePhase.BOOTING: "Booting",
        NodePhase.BOOTSTRAPPING: "Joining",
        NodePhase.RUNNING: "Running",
        NodePhase.SUCCEEDED: "Deleted",
        NodePhase.FAILED: "Failed",
        NodePhase.PAUSED: "Paused",
    }[phase]

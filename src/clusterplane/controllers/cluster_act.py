"""The act phase of the cluster controller: every driver call of one pass, no database.

Given a snapshot of the cluster, its live nodes and their hosts' drivers, it calls
* the host driver of each node (prepare, describe, release) and the cluster's flavour to
  join a node once its host runs and to remove a leaving node before its host is released;
* the flavour for the bring-up step of the current phase (start it once, then poll it);
* every worker's host driver for the acceptance checks once a test step is done;
* the flavour to apply changed add-ons and config.
It returns what happened as plain values (`Outcome`); the controller applies them. Driver
state is persisted as returned and never read. A `PermanentProviderError` or failed
progress becomes a failure of that node, step or config with the driver's message; a
`TemporaryProviderError` leaves the pass (the whole pass is retried after its delay).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from clusterplane.db.rows import ClusterRow
from clusterplane.domain import lifecycle
from clusterplane.domain.checks import CheckPurpose
from clusterplane.domain.enums import ClusterPhase, NodePhase, NodeRole
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.contracts import HostChecks
from clusterplane.providers.models import (
    BringUpStep,
    CheckProgress,
    CheckSpec,
    ClusterConfigSpec,
    ClusterStepSpec,
    DriverState,
    HostSpec,
    InstanceSpec,
    NodeAccess,
    NodeProgress,
    Progress,
)
from clusterplane.providers.registry import Drivers
from clusterplane.services.health import acceptance
from clusterplane.services.health.health import UNHEALTHY

from .node_views import LiveNode
from .specs import instance_spec

P = ClusterPhase
# The controller's phases -> the flavour's bring-up steps.
STEP_OF: dict[ClusterPhase, BringUpStep] = {
    P.WAITING_FOR_SUBNET: BringUpStep.NETWORK,
    P.WAITING_FOR_SHARED_VOLUME: BringUpStep.SHARED_VOLUME,
    P.INSTALLING_DRIVERS: BringUpStep.DRIVERS,
    P.RUNNING_ACCEPTANCE_TESTS: BringUpStep.ACCEPTANCE_TESTS,
    P.RUNNING_NCCL_TESTS: BringUpStep.NCCL_TESTS,
}
assert set(STEP_OF) == lifecycle.STEP_PHASES
TEST_PHASES = (P.RUNNING_ACCEPTANCE_TESTS, P.RUNNING_NCCL_TESTS)
# Phases from which one pass may reach a test step (its workers run, the steps before it
# are done at once): their snapshots carry the workers' hosts.
TESTS_REACHABLE_FROM = frozenset(
    {
        P.WAITING_FOR_DATA_PLANE_NODES,
        P.WAITING_FOR_SHARED_VOLUME,
        P.INSTALLING_DRIVERS,
        *TEST_PHASES,
    }
)
# How long after its test step began an acceptance check may still be running.
CHECK_DEADLINE = timedelta(hours=3)
UNCHANGED: Any = object()  # a NodeOutcome field the pass did not touch


@dataclass
class NodeOutcome:
    node_id: str
    state: DriverState | None
    phase: NodePhase | None = None
    terminated: bool = False
    failed: str | None = None  # the driver's message when the node failed
    flavour_state: Any = UNCHANGED  # DriverState | None once joined or removed


@dataclass
class Snapshot:
    cluster: ClusterRow
    nodes: list[LiveNode]
    volumes_ready: bool
    sequence: tuple[ClusterPhase, ...]
    host_drivers: dict[str, str] = field(default_factory=dict)  # host id -> its driver
    hosts: dict[str, HostSpec] = field(default_factory=dict)  # in a test phase: the workers'
    access: NodeAccess = field(default_factory=NodeAccess)  # the same for every node
    tests_possible: bool = False  # `hosts` are loaded: this pass may take a test step

    @property
    def host_driver(self) -> str | None:
        """The driver of the cluster's hosts (None before any node has a host)."""
        return min(self.host_drivers.values(), default=None)


@dataclass
class StepOutcome:
    """The bring-up step of one phase, started or polled by this pass."""

    phase: ClusterPhase
    state: DriverState | None = None
    started: bool = False
    done: bool = False
    failed: str | None = None
    checks: list[acceptance.CheckResult] = field(default_factory=list)


@dataclass
class Outcome:
    nodes: list[NodeOutcome] = field(default_factory=list)
    # The steps this pass took, in order: the cluster's phase's (or the one this pass's
    # nodes take it to), then each one a step done at once led to.
    steps: list[StepOutcome] = field(default_factory=list)
    applied: dict[str, Any] | None = None  # the add-ons and config the flavour applied
    config_failed: str | None = None
    deleting: bool = False  # the cluster this pass acted on was being deleted

    def step_for(self, phase: str) -> StepOutcome | None:
        return next((s for s in self.steps if s.phase == phase), None)


def failed(progress: Progress) -> str | None:
    return (progress.message or "the driver reported a failure") if progress.failed else None


class ClusterActor:
    def __init__(self, drivers: Drivers):
        self.drivers = drivers

    def spec(self, snap: Snapshot, node: LiveNode) -> InstanceSpec:
        driver = snap.host_drivers.get(node.host_id or "")
        return instance_spec(snap.cluster, node, driver, snap.access)

    # -- nodes -------------------------------------------------------------------------

    def node(self, snap: Snapshot, node: LiveNode, now: datetime, *, launch: bool) -> NodeOutcome:
        """One node's driver calls; a permanent error fails the node."""
        try:
            return self._node(snap, node, now, launch=launch)
        except PermanentProviderError as exc:
            return NodeOutcome(node.id, node.provider_state, failed=exc.message)

    def _node(self, snap: Snapshot, node: LiveNode, now: datetime, *, launch: bool) -> NodeOutcome:
        leaving = snap.cluster.delete_requested_at is not None or node.marked_for_deletion
        if not leaving and node.provider_state is None and not launch:
            return NodeOutcome(node.id, None)  # not launched, nor to be yet: nothing to ask
        spec = self.spec(snap, node)
        if leaving:
            return self._leave(snap, node, spec, now)
        host = self.drivers.host(spec.driver)
        if node.provider_state is None:
            return self._joined(snap, node, spec, host.prepare(spec, now), now)
        return self._joined(snap, node, spec, host.describe(spec, node.provider_state, now), now)

    def _joined(
        self, snap: Snapshot, node: LiveNode, spec: InstanceSpec, host: NodeProgress, now: datetime
    ) -> NodeOutcome:
        """A node whose host runs joins the cluster before it counts as running."""
        outcome = NodeOutcome(node.id, host.state, phase=host.phase, failed=failed(host))
        if host.phase != NodePhase.RUNNING or node.phase == NodePhase.RUNNING:
            return outcome
        joined = self.drivers.flavour(snap.cluster.cluster_type, spec.driver).join_node(spec, now)
        outcome.failed = failed(joined)
        if joined.done:
            outcome.flavour_state = joined.state
        else:
            outcome.phase = NodePhase.BOOTSTRAPPING
        return outcome

    def _leave(
        self, snap: Snapshot, node: LiveNode, spec: InstanceSpec, now: datetime
    ) -> NodeOutcome:
        """A leaving node is removed from the cluster, then its host released and wiped."""
        outcome = NodeOutcome(node.id, node.provider_state)
        deleting = snap.cluster.delete_requested_at is not None
        if not deleting and node.flavour_state is not None:
            flavour = self.drivers.flavour(snap.cluster.cluster_type, spec.driver)
            removed = flavour.remove_node(spec, node.flavour_state, now)
            if not removed.done:
                outcome.flavour_state = removed.state
                outcome.failed = failed(removed)
                return outcome
            outcome.flavour_state = None
        if node.provider_state is None:
            outcome.terminated = True
            return outcome
        released = self.drivers.host(spec.driver).release(spec, node.provider_state, now)
        outcome.state, outcome.terminated = released.state, released.done
        outcome.failed = failed(released)
        return outcome

    # -- the bring-up step, acceptance checks, config ------------------------------------

    def steps(
        self,
        snap: Snapshot,
        phase: ClusterPhase,
        facts: lifecycle.BringUpFacts,
        outcome: Outcome,
        now: datetime,
    ) -> None:
        """The step of `phase`; while a step is done at once (instantaneous drivers), the
        next phase the cluster will reach with it done (`lifecycle.phase_reached`, as the
        apply walks) has its step started in this pass too. A test step ends the walk:
        its verdicts are the apply's."""
        while (step := self.step(snap, phase, now)) is not None:
            outcome.steps.append(step)
            if not step.done or step.failed is not None or phase in TEST_PHASES:
                return
            done = replace(facts, step_done=True)
            following = lifecycle.phase_reached(snap.sequence, phase, done)
            if following == phase or (following in TEST_PHASES and not snap.tests_possible):
                return
            phase = following

    def step(self, snap: Snapshot, phase: ClusterPhase, now: datetime) -> StepOutcome | None:
        """Start the step of `phase`, or poll it when it is the cluster's running step."""
        cluster = snap.cluster
        step = STEP_OF.get(phase)
        if step is None or cluster.delete_requested_at is not None:
            return None
        ours = (
            cluster.phase == phase
            and cluster.step_state is not None
            and cluster.step_phase == phase
        )
        if ours and cluster.step_error is not None:
            return None  # failed: the cluster waits in this phase, the failure on record
        spec = ClusterStepSpec(
            cluster_id=cluster.id,
            cluster_type=cluster.cluster_type,
            step=step,
            region=cluster.region,
            num_nodes=len(snap.nodes),
        )
        known = cluster.step_state if ours else None
        try:
            flavour = self.drivers.flavour(cluster.cluster_type, snap.host_driver)
            if known is not None:
                progress = flavour.poll_step(spec, known, now)
            else:
                progress = flavour.start_step(spec, now)
        except PermanentProviderError as exc:
            progress = Progress(False, known or {}, failed=True, message=exc.message)
        outcome = StepOutcome(phase, progress.state, not ours, progress.done, failed(progress))
        if progress.done and phase in TEST_PHASES:
            started = now if outcome.started else cluster.step_started_at
            checks = self.acceptance_checks(snap, phase, started or now, now)
            outcome.done = checks is not None  # not yet: checks still running
            outcome.checks = checks or []
        return outcome

    def acceptance_checks(
        self, snap: Snapshot, phase: ClusterPhase, started: datetime, now: datetime
    ) -> list[acceptance.CheckResult] | None:
        """Every testable worker's host driver runs this phase's checks, each under a run id
        of its own for this step (asking again reports the same run), all of them started
        at once (the workers test in parallel; a driver may queue a host's own checks);
        None while one is still running, unless past `CHECK_DEADLINE` after the step
        began: then it fails."""
        planned = acceptance.planned_checks(snap.cluster, phase)
        results: list[acceptance.CheckResult] = []
        late = now >= started + CHECK_DEADLINE
        running = False
        features: dict[str, HostChecks | str] = {}  # per host driver, not per worker
        step_id = f"{snap.cluster.id}:{phase}:{started.isoformat()}"
        for node, host in testable(snap):
            feature = features.get(host.driver)
            if feature is None:
                feature = features[host.driver] = self._check_feature(host)
            for kind, level in planned:
                run_id = f"{step_id}:{node.id}:{kind}"
                spec = CheckSpec(run_id, kind, level, CheckPurpose.ACCEPTANCE)
                progress = self._check(feature, host, spec, now)
                message = failed(progress)
                if message is None and not progress.done:
                    if not late:
                        running = True
                        continue
                    message = f"the check did not finish within {CHECK_DEADLINE}"
                results.append(
                    acceptance.CheckResult(node.id, kind, level, progress.figures, message)
                )
        return None if running else results

    def _check_feature(self, host: HostSpec) -> HostChecks | str:
        """The host driver's check feature, or why there is none."""
        try:
            feature = self.drivers.checks(host.driver)
        except PermanentProviderError as exc:
            return exc.message
        return feature or f"the {host.driver} host driver runs no active checks"

    @staticmethod
    def _check(
        feature: HostChecks | str, host: HostSpec, spec: CheckSpec, now: datetime
    ) -> CheckProgress:
        if isinstance(feature, str):
            return CheckProgress(False, {}, failed=True, message=feature)
        try:
            progress = feature.start_check(host, spec, now)
            if progress.done or progress.failed:
                return progress
            return feature.poll_check(host, spec, progress.state, now)
        except PermanentProviderError as exc:
            return CheckProgress(False, {}, failed=True, message=exc.message)

    def config(
        self, snap: Snapshot, desired: dict[str, Any], outcome: Outcome, now: datetime
    ) -> None:
        cluster = snap.cluster
        spec = ClusterConfigSpec(
            cluster_id=cluster.id,
            cluster_type=cluster.cluster_type,
            region=cluster.region,
            add_ons=desired["add_ons"],
            cluster_config=desired["cluster_config"],
            slurm_shm_size_gib=cluster.slurm_shm_size_gib or 0,
        )
        try:
            flavour = self.drivers.flavour(cluster.cluster_type, snap.host_driver)
            progress = flavour.apply_config(spec, now)
        except PermanentProviderError as exc:
            progress = Progress(False, {}, failed=True, message=exc.message)
        outcome.config_failed = failed(progress)
        if progress.done:
            outcome.applied = desired


def workers_of(nodes: list[LiveNode]) -> list[LiveNode]:
    return [
        n
        for n in nodes
        if n.role == NodeRole.GPU_WORKER and not n.marked_for_deletion and not n.preemptible
    ]


def testable(snap: Snapshot) -> list[tuple[LiveNode, HostSpec]]:
    """The workers acceptance tests judge (serving, not excluded), with their hosts."""
    return [
        (n, snap.hosts[n.host_id])
        for n in workers_of(snap.nodes)
        if n.health != UNHEALTHY and n.host_id in snap.hosts
    ]

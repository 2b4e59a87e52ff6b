"""`SimulatedHostDriver`: nodes that boot on fleet time, and seeded active checks.

The driver is a pure function of the state it returned earlier and `now`: preparing
records when the node started and how long each phase takes; describing reads the phase
off the clock. Nothing is held in memory, so a server restart resumes every simulated
machine where it was. The host's faults are ground truth kept by the simulation
(`FaultView`): checks measure through them, a reboot or a wipe fixes what it can, and the
hardware repair before a return-to-service check fixes everything.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from clusterplane.clock import utc
from clusterplane.domain.checks import CheckKind, CheckPurpose
from clusterplane.domain.enums import NodePhase, NodeRole
from clusterplane.domain.health import Action
from clusterplane.providers.models import (
    CheckProgress,
    CheckSpec,
    DriverState,
    HostSpec,
    InstanceSpec,
    NodeProgress,
    Progress,
    RebootKind,
)
from clusterplane.simulation import checks, timings
from clusterplane.simulation.checks import Fault
from clusterplane.simulation.state import reads_state

# What a reboot in place fixes: the strongest fault repair it amounts to.
REBOOT_FIXES = {RebootKind.REBOOT: Action.GPU_RESET, RebootKind.POWER_CYCLE: Action.REBOOT}
WIPE_FIXES = Action.REBOOT  # releasing a node re-images its host


class FaultView(Protocol):
    """The simulated hosts' faults (kept in the database by `simulation.faults`)."""

    def open_faults(self, host_name: str, now: datetime) -> list[Fault]: ...

    def repair(self, host_name: str, fixes: Action, now: datetime) -> int: ...


class NoFaults:
    """A fleet without faults (unit tests of the drivers)."""

    def open_faults(self, host_name: str, now: datetime) -> list[Fault]:
        return []

    def repair(self, host_name: str, fixes: Action, now: datetime) -> int:
        return 0


def _at(state: DriverState, key: str) -> datetime:
    return utc(datetime.fromisoformat(str(state[key])))


class SimulatedHostDriver:
    name = "simulated"

    def __init__(
        self, *, seed: int = 0, duration_factor: float = 1.0, faults: FaultView | None = None
    ):
        self.seed = seed
        self.duration_factor = duration_factor
        self.faults: FaultView = faults or NoFaults()

    def _draw(self, key: str, bounds: tuple[float, float, float]) -> float:
        return timings.draw(self.seed, key, bounds, self.duration_factor)

    def _boot(self, spec: InstanceSpec, key: str) -> dict[str, float]:
        control_plane = spec.role == NodeRole.CONTROL_PLANE
        return {
            "booting": self._draw(
                f"{key}:booting", timings.CP_BOOTING if control_plane else timings.GPU_BOOTING
            ),
            "bootstrapping": self._draw(
                f"{key}:bootstrapping",
                timings.CP_BOOTSTRAPPING if control_plane else timings.GPU_BOOTSTRAPPING,
            ),
        }

    def prepare(self, spec: InstanceSpec, now: datetime) -> NodeProgress:
        key = spec.instance_id
        state: DriverState = {
            "launched_at": now.isoformat(),
            "scheduling": self._draw(f"{key}:scheduling", timings.INSTANCE_SCHEDULING),
            **self._boot(spec, key),
        }
        return self.describe(spec, state, now)

    @reads_state
    def describe(self, spec: InstanceSpec, state: DriverState, now: datetime) -> NodeProgress:
        if "terminated_at" in state:
            return NodeProgress(True, state, message="released", phase=NodePhase.SUCCEEDED)
        elapsed = (now - _at(state, "launched_at")).total_seconds()
        for phase, key in (
            (NodePhase.SCHEDULING, "scheduling"),
            (NodePhase.BOOTING, "booting"),
            (NodePhase.BOOTSTRAPPING, "bootstrapping"),
        ):
            elapsed -= float(state[key])
            if elapsed < 0:
                return NodeProgress(False, state, phase=phase)
        return NodeProgress(True, state, phase=NodePhase.RUNNING)

    @reads_state
    def release(self, spec: InstanceSpec, state: DriverState, now: datetime) -> Progress:
        state = dict(state)
        if "terminating_at" not in state:
            state["terminating_at"] = now.isoformat()
            state["termination"] = self._draw(
                f"{spec.instance_id}:termination", timings.INSTANCE_TERMINATION
            )
        done_at = _at(state, "terminating_at") + timedelta(seconds=float(state["termination"]))
        if now < done_at:
            return Progress(False, state)
        if "terminated_at" not in state:
            state["terminated_at"] = done_at.isoformat()
            self.faults.repair(spec.host_name, WIPE_FIXES, now)
        return Progress(True, state)

    @reads_state
    def reboot(
        self, spec: InstanceSpec, state: DriverState, kind: RebootKind, now: datetime
    ) -> NodeProgress:
        """A reboot skips scheduling: the machine boots and bootstraps again."""
        count = int(state.get("reboots", 0)) + 1
        self.faults.repair(spec.host_name, REBOOT_FIXES[kind], now)
        rebooted: DriverState = {
            "launched_at": now.isoformat(),
            "reboots": count,
            "scheduling": 0.0,
            **self._boot(spec, f"{spec.instance_id}:reboot{count}"),
        }
        return self.describe(spec, rebooted, now)

    # -- the check feature -------------------------------------------------------------

    def start_check(self, host: HostSpec, check: CheckSpec, now: datetime) -> CheckProgress:
        """Acceptance checks take no time of their own (the flavour's test step is their
        time); a return-to-service check follows the hardware repair, which fixes all."""
        if check.purpose == CheckPurpose.RETURN_TO_SERVICE:
            self.faults.repair(host.host_name, Action.REPLACE, now)
        took = 0.0
        if check.purpose != CheckPurpose.ACCEPTANCE:
            took = checks.duration(self.seed, check.run_id, CheckKind(check.kind), check.level)
        state: DriverState = {"started_at": now.isoformat(), "duration": took}
        return self.poll_check(host, check, state, now)

    @reads_state
    def poll_check(
        self, host: HostSpec, check: CheckSpec, state: DriverState, now: datetime
    ) -> CheckProgress:
        done_at = _at(state, "started_at") + timedelta(seconds=float(state["duration"]))
        if now < done_at:
            left = (done_at - now).total_seconds()
            return CheckProgress(False, state, poll_after_seconds=left)
        found = self.faults.open_faults(host.host_name, now)
        figures = checks.measure(
            self.seed,
            check.run_id,
            CheckKind(check.kind),
            check.level,
            host.gpu_type,
            host.num_gpus,
            found,
        )
        return CheckProgress(True, state, figures=figures)

"""`SimulatedProvider`: instances, cluster steps and volumes that progress on fleet time.

The driver is a pure function of the state it returned earlier and `now`: launching records
when the instance started and how long each phase takes; describing reads the phase off
the clock. Nothing is held in memory, so a server restart resumes every simulated machine
exactly where it was.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from clusterplane.clock import utc
from clusterplane.domain.enums import NodePhase, NodeRole
from clusterplane.providers.models import (
    ClusterConfigSpec,
    ClusterStepSpec,
    DriverState,
    InstanceSpec,
    InstanceStatus,
    StepStatus,
    TerminationStatus,
    VolumeSpec,
    VolumeStatus,
)
from clusterplane.providers.simulated import timings


def _at(state: DriverState, key: str) -> datetime:
    return utc(datetime.fromisoformat(str(state[key])))


class SimulatedProvider:
    name = "simulated"

    def __init__(self, *, seed: int = 0, duration_factor: float = 1.0):
        self.seed = seed
        self.duration_factor = duration_factor

    def _draw(self, key: str, bounds: tuple[float, float, float]) -> float:
        return timings.draw(self.seed, key, bounds, self.duration_factor)

    # -- instances -------------------------------------------------------------------

    def launch_instance(self, spec: InstanceSpec, now: datetime) -> DriverState:
        control_plane = spec.role == NodeRole.CONTROL_PLANE
        key = spec.instance_id
        return {
            "launched_at": now.isoformat(),
            "scheduling": self._draw(f"{key}:scheduling", timings.INSTANCE_SCHEDULING),
            "booting": self._draw(
                f"{key}:booting", timings.CP_BOOTING if control_plane else timings.GPU_BOOTING
            ),
            "bootstrapping": self._draw(
                f"{key}:bootstrapping",
                timings.CP_BOOTSTRAPPING if control_plane else timings.GPU_BOOTSTRAPPING,
            ),
        }

    def describe_instance(
        self, spec: InstanceSpec, state: DriverState, now: datetime
    ) -> InstanceStatus:
        if "terminated_at" in state:
            return InstanceStatus(NodePhase.SUCCEEDED, state, "terminated")
        elapsed = (now - _at(state, "launched_at")).total_seconds()
        for phase, key in (
            (NodePhase.SCHEDULING, "scheduling"),
            (NodePhase.BOOTING, "booting"),
            (NodePhase.BOOTSTRAPPING, "bootstrapping"),
        ):
            elapsed -= float(state[key])
            if elapsed < 0:
                return InstanceStatus(phase, state)
        return InstanceStatus(NodePhase.RUNNING, state)

    def terminate_instance(
        self, spec: InstanceSpec, state: DriverState, now: datetime
    ) -> TerminationStatus:
        state = dict(state)
        if "terminating_at" not in state:
            state["terminating_at"] = now.isoformat()
            state["termination"] = self._draw(
                f"{spec.instance_id}:termination", timings.INSTANCE_TERMINATION
            )
        done_at = _at(state, "terminating_at") + timedelta(seconds=float(state["termination"]))
        if now >= done_at:
            state.setdefault("terminated_at", done_at.isoformat())
            return TerminationStatus(True, state)
        return TerminationStatus(False, state)

    def reboot_instance(self, spec: InstanceSpec, state: DriverState, now: datetime) -> DriverState:
        """A reboot skips scheduling: the machine boots and bootstraps again."""
        count = int(state.get("reboots", 0)) + 1
        key = f"{spec.instance_id}:reboot{count}"
        control_plane = spec.role == NodeRole.CONTROL_PLANE
        return {
            "launched_at": now.isoformat(),
            "reboots": count,
            "scheduling": 0.0,
            "booting": self._draw(
                f"{key}:booting", timings.CP_BOOTING if control_plane else timings.GPU_BOOTING
            ),
            "bootstrapping": self._draw(
                f"{key}:bootstrapping",
                timings.CP_BOOTSTRAPPING if control_plane else timings.GPU_BOOTSTRAPPING,
            ),
        }

    # -- cluster-level steps ---------------------------------------------------------

    def start_step(self, spec: ClusterStepSpec, now: datetime) -> DriverState:
        bounds = timings.CLUSTER_STEPS.get(spec.kind, timings.DEFAULT_STEP)
        return {
            "kind": spec.kind,
            "started_at": now.isoformat(),
            "duration": self._draw(f"{spec.cluster_id}:{spec.kind}", bounds),
        }

    def poll_step(self, spec: ClusterStepSpec, state: DriverState, now: datetime) -> StepStatus:
        done_at = _at(state, "started_at") + timedelta(seconds=float(state["duration"]))
        return StepStatus(done=now >= done_at, state=state)

    def apply_cluster_config(self, spec: ClusterConfigSpec, now: datetime) -> DriverState:
        """The simulated cluster installs add-ons at once: it records what it applied."""
        return {
            "applied_at": now.isoformat(),
            "add_ons": sorted(a["name"] for a in spec.add_ons),
        }

    # -- volumes ---------------------------------------------------------------------

    def create_volume(self, spec: VolumeSpec, now: datetime) -> DriverState:
        return {
            "created_at": now.isoformat(),
            "create": self._draw(f"{spec.volume_id}:create", timings.VOLUME_CREATE),
            "size_tib": spec.size_tib,
        }

    def describe_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> VolumeStatus:
        ready_at = _at(state, "created_at") + timedelta(seconds=float(state["create"]))
        size = int(state.get("size_tib", spec.size_tib))
        if "resize_started_at" in state:
            resized_at = _at(state, "resize_started_at") + timedelta(seconds=float(state["resize"]))
            if now >= resized_at:
                size = int(state["resize_to"])
        return VolumeStatus(ready=now >= ready_at, state=state, size_tib=size)

    def resize_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> DriverState:
        state = dict(state)
        if int(state.get("resize_to") or state.get("size_tib") or 0) == spec.size_tib:
            return state
        if "resize_to" in state:
            state["size_tib"] = max(int(state["size_tib"]), int(state["resize_to"]))
        state["resize_started_at"] = now.isoformat()
        state["resize_to"] = spec.size_tib
        state["resize"] = self._draw(
            f"{spec.volume_id}:resize:{spec.size_tib}", timings.VOLUME_RESIZE
        )
        return state

    def delete_volume(
        self, spec: VolumeSpec, state: DriverState, now: datetime
    ) -> TerminationStatus:
        state = dict(state)
        if "deleting_at" not in state:
            state["deleting_at"] = now.isoformat()
            state["delete"] = self._draw(f"{spec.volume_id}:delete", timings.VOLUME_DELETE)
        done_at = _at(state, "deleting_at") + timedelta(seconds=float(state["delete"]))
        return TerminationStatus(now >= done_at, state)

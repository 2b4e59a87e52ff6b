"""`SimulatedFlavour`: bring-up steps and drains that take seeded fleet time.

It serves both cluster types (SLURM and KUBERNETES) of the simulated fleet. Joining,
removing nodes and applying config are done at once; a drain takes a drawn time and
records who drained, so an undrain by anyone else leaves the nodes drained.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from clusterplane.clock import utc
from clusterplane.providers.models import (
    ClusterConfigSpec,
    ClusterStepSpec,
    DrainProgress,
    DrainSpec,
    DriverState,
    InstanceSpec,
    Progress,
)
from clusterplane.simulation import timings
from clusterplane.simulation.state import reads_state


def _due(state: DriverState, now: datetime) -> bool:
    started = utc(datetime.fromisoformat(str(state["started_at"])))
    return now >= started + timedelta(seconds=float(state["duration"]))


class SimulatedFlavour:
    name = "simulated"

    def __init__(self, *, seed: int = 0, duration_factor: float = 1.0):
        self.seed = seed
        self.duration_factor = duration_factor

    def _draw(self, key: str, bounds: tuple[float, float, float]) -> float:
        return timings.draw(self.seed, key, bounds, self.duration_factor)

    def start_step(self, spec: ClusterStepSpec, now: datetime) -> Progress:
        key, bounds = timings.CLUSTER_STEPS[spec.step]
        state: DriverState = {
            "step": spec.step.value,
            "started_at": now.isoformat(),
            "duration": self._draw(f"{spec.cluster_id}:{key}", bounds),
        }
        return self.poll_step(spec, state, now)

    @reads_state
    def poll_step(self, spec: ClusterStepSpec, state: DriverState, now: datetime) -> Progress:
        return Progress(_due(state, now), state)

    def join_node(self, spec: InstanceSpec, now: datetime) -> Progress:
        return Progress(True, {"member": spec.node_name})

    @reads_state
    def remove_node(self, spec: InstanceSpec, state: DriverState, now: datetime) -> Progress:
        return Progress(True, {**state, "member": None})

    def apply_config(self, spec: ClusterConfigSpec, now: datetime) -> Progress:
        """The simulated cluster installs add-ons at once: it records what it applied."""
        state: DriverState = {
            "applied_at": now.isoformat(),
            "add_ons": sorted(a["name"] for a in spec.add_ons),
        }
        return Progress(True, state)

    @reads_state
    def drain(self, spec: DrainSpec, state: DriverState | None, now: datetime) -> DrainProgress:
        if state is None or state.get("undrained_at") is not None:
            key = f"{spec.cluster_id}:{','.join(spec.node_names)}:{spec.reason}:drain"
            state = {
                "started_at": now.isoformat(),
                "duration": self._draw(key, timings.DRAIN),
                "drained_by": spec.drained_by,
                "reason": spec.reason,
                "undrained_at": None,
            }
        return self.is_drained(spec, state, now)

    @reads_state
    def undrain(self, spec: DrainSpec, state: DriverState, now: datetime) -> DrainProgress:
        if state.get("drained_by") not in (None, spec.drained_by):
            drained = self.is_drained(spec, state, now)
            message = f"drained by {state['drained_by']}; left drained"
            return DrainProgress(False, state, message=message, drained_by=drained.drained_by)
        state = {**state, "undrained_at": state.get("undrained_at") or now.isoformat()}
        return DrainProgress(True, state)

    @reads_state
    def is_drained(self, spec: DrainSpec, state: DriverState, now: datetime) -> DrainProgress:
        if state.get("undrained_at") is not None:
            return DrainProgress(False, state)
        drained_by = str(state["drained_by"])
        return DrainProgress(_due(state, now), state, drained_by=drained_by)

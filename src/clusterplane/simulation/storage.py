"""`SimulatedStorage`: shared volumes that are created, grown and deleted on fleet time."""

from __future__ import annotations

from datetime import datetime, timedelta

from clusterplane.clock import utc
from clusterplane.providers.models import DriverState, Progress, VolumeProgress, VolumeSpec
from clusterplane.simulation import timings
from clusterplane.simulation.state import reads_state


def _at(state: DriverState, key: str) -> datetime:
    return utc(datetime.fromisoformat(str(state[key])))


class SimulatedStorage:
    name = "simulated"

    def __init__(self, *, seed: int = 0, duration_factor: float = 1.0):
        self.seed = seed
        self.duration_factor = duration_factor

    def _draw(self, key: str, bounds: tuple[float, float, float]) -> float:
        return timings.draw(self.seed, key, bounds, self.duration_factor)

    def create_volume(self, spec: VolumeSpec, now: datetime) -> VolumeProgress:
        state: DriverState = {
            "created_at": now.isoformat(),
            "create": self._draw(f"{spec.volume_id}:create", timings.VOLUME_CREATE),
            "size_tib": spec.size_tib,
        }
        return self.describe_volume(spec, state, now)

    @reads_state
    def describe_volume(
        self, spec: VolumeSpec, state: DriverState, now: datetime
    ) -> VolumeProgress:
        ready_at = _at(state, "created_at") + timedelta(seconds=float(state["create"]))
        size = int(state.get("size_tib", spec.size_tib))
        if "resize_started_at" in state:
            resized_at = _at(state, "resize_started_at") + timedelta(seconds=float(state["resize"]))
            if now >= resized_at:
                size = int(state["resize_to"])
        return VolumeProgress(now >= ready_at, state, size_tib=size)

    @reads_state
    def resize_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> VolumeProgress:
        state = dict(state)
        if int(state.get("resize_to") or state.get("size_tib") or 0) != spec.size_tib:
            if "resize_to" in state:
                state["size_tib"] = max(int(state["size_tib"]), int(state["resize_to"]))
            state["resize_started_at"] = now.isoformat()
            state["resize_to"] = spec.size_tib
            state["resize"] = self._draw(
                f"{spec.volume_id}:resize:{spec.size_tib}", timings.VOLUME_RESIZE
            )
        return self.describe_volume(spec, state, now)

    @reads_state
    def delete_volume(self, spec: VolumeSpec, state: DriverState, now: datetime) -> Progress:
        state = dict(state)
        if "deleting_at" not in state:
            state["deleting_at"] = now.isoformat()
            state["delete"] = self._draw(f"{spec.volume_id}:delete", timings.VOLUME_DELETE)
        done_at = _at(state, "deleting_at") + timedelta(seconds=float(state["delete"]))
        return Progress(now >= done_at, state)

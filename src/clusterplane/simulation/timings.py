"""Seeded, realistic step durations of the simulated fleet, in fleet seconds.

Each duration is drawn from a triangular distribution over a range measured in minutes, as
real bare-metal GPU bring-up takes, from a random generator seeded by (fleet seed, object
id, step) so the same object always takes the same time: restarts and replays agree.
"""

from __future__ import annotations

import hashlib
import random

from clusterplane.providers.models import BringUpStep

# (low, mode, high) in fleet seconds
INSTANCE_SCHEDULING = (5.0, 10.0, 30.0)
GPU_BOOTING = (120.0, 180.0, 360.0)
GPU_BOOTSTRAPPING = (120.0, 200.0, 420.0)
CP_BOOTING = (40.0, 60.0, 120.0)
CP_BOOTSTRAPPING = (90.0, 150.0, 300.0)
INSTANCE_TERMINATION = (30.0, 60.0, 150.0)
VOLUME_CREATE = (60.0, 120.0, 300.0)
VOLUME_RESIZE = (30.0, 60.0, 180.0)
VOLUME_DELETE = (20.0, 45.0, 120.0)
# A bring-up step -> (the key its duration is drawn under, its range).
CLUSTER_STEPS: dict[BringUpStep, tuple[str, tuple[float, float, float]]] = {
    BringUpStep.NETWORK: ("CLUSTER_PHASE_WAITING_FOR_SUBNET", (15.0, 30.0, 90.0)),
    BringUpStep.SHARED_VOLUME: ("CLUSTER_PHASE_WAITING_FOR_SHARED_VOLUME", (30.0, 60.0, 180.0)),
    BringUpStep.DRIVERS: ("CLUSTER_PHASE_INSTALLING_DRIVERS", (180.0, 300.0, 540.0)),
    BringUpStep.ACCEPTANCE_TESTS: (
        "CLUSTER_PHASE_RUNNING_ACCEPTANCE_TESTS",
        (300.0, 420.0, 600.0),
    ),
    BringUpStep.NCCL_TESTS: ("CLUSTER_PHASE_RUNNING_NCCL_TESTS", (120.0, 180.0, 360.0)),
}
DRAIN = (30.0, 90.0, 300.0)


def draw(seed: int, key: str, bounds: tuple[float, float, float], factor: float) -> float:
    """A duration in fleet seconds for `key`, the same every time for the same inputs."""
    if factor == 0:
        return 0.0  # instantaneous steps: nothing to draw
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    low, mode, high = bounds
    return round(rng.triangular(low, high, mode) * factor, 3)

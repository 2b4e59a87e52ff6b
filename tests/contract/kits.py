"""The drivers the contract suite runs against: one kit per driver, in each role's table.

A kit hands the suite one driver with what it needs around it (a node, a host, a cluster
or a volume it can serve) and a clock (`advance`) that moves time the way that driver
needs: fleet time for the simulated drivers; a real driver's kit would wait for its hosts
and use a longer `step`. Another driver joins the suite by one entry in its role's table
(`HOST_KITS`, `FLAVOUR_KITS`, `STORAGE_KITS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clusterplane.domain.enums import NodeRole
from clusterplane.providers.contracts import ClusterFlavour, HostDriver, StorageDriver
from clusterplane.providers.models import HostSpec, InstanceSpec, VolumeSpec
from clusterplane.simulation.flavour import SimulatedFlavour
from clusterplane.simulation.hosts import SimulatedHostDriver
from clusterplane.simulation.storage import SimulatedStorage

NODE = InstanceSpec(
    instance_id="i-contract",
    cluster_id="c-contract",
    role=NodeRole.GPU_WORKER,
    node_name="gpu-dp-1",
    host_name="host-1",
    region="us-central-8",
    gpu_type="H100_SXM",
    num_gpus=8,
    image="ubuntu-22.04",
    driver="simulated",
    cluster_type="SLURM",
)

HOST = HostSpec("host-1", "us-central-8", "H100_SXM", 8, "simulated")
VOLUME = VolumeSpec(volume_id="v-contract", region="us-central-8", size_tib=2)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    step: timedelta = timedelta(minutes=1)
    horizon: timedelta = timedelta(hours=4)  # every operation must finish within it

    def advance(self) -> datetime:
        self.now += self.step
        return self.now


@dataclass
class HostKit(Clock):
    host: HostDriver = field(default_factory=SimulatedHostDriver)
    node: InstanceSpec = NODE
    host_spec: HostSpec = HOST


@dataclass
class FlavourKit(Clock):
    flavour: ClusterFlavour = field(default_factory=SimulatedFlavour)
    node: InstanceSpec = NODE
    cluster_types: tuple[str, ...] = ("SLURM", "KUBERNETES")


@dataclass
class StorageKit(Clock):
    storage: StorageDriver = field(default_factory=SimulatedStorage)
    volume: VolumeSpec = VOLUME


HOST_KITS: dict[str, Callable[[], HostKit]] = {
    "simulated": lambda: HostKit(host=SimulatedHostDriver(seed=11)),
}
FLAVOUR_KITS: dict[str, Callable[[], FlavourKit]] = {
    "simulated": lambda: FlavourKit(flavour=SimulatedFlavour(seed=11)),
}
STORAGE_KITS: dict[str, Callable[[], StorageKit]] = {
    "simulated": lambda: StorageKit(storage=SimulatedStorage(seed=11)),
}

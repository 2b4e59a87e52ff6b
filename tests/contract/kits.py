"""The drivers the contract suite runs against, one `DriverKit` each.

A kit hands the suite a host driver, a flavour and a storage driver with everything the
suite needs around them: a node, a host, a cluster and a volume they can serve, and a
clock (`advance`) that moves time the way that driver needs (fleet time for simulated
drivers; a real driver's kit would wait for its hosts). Another driver joins the suite by
one entry in `KITS`.
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


@dataclass
class DriverKit:
    host: HostDriver
    flavour: ClusterFlavour
    storage: StorageDriver
    node: InstanceSpec
    host_spec: HostSpec
    volume: VolumeSpec
    cluster_types: tuple[str, ...]
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    step: timedelta = timedelta(minutes=1)
    horizon: timedelta = timedelta(hours=4)  # every operation must finish within it

    def advance(self) -> datetime:
        self.now += self.step
        return self.now


def simulated() -> DriverKit:
    node = InstanceSpec(
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
    return DriverKit(
        host=SimulatedHostDriver(seed=11),
        flavour=SimulatedFlavour(seed=11),
        storage=SimulatedStorage(seed=11),
        node=node,
        host_spec=HostSpec("host-1", "us-central-8", "H100_SXM", 8, "simulated"),
        volume=VolumeSpec(volume_id="v-contract", region="us-central-8", size_tib=2),
        cluster_types=("SLURM", "KUBERNETES"),
    )


KITS: dict[str, Callable[[], DriverKit]] = {"simulated": simulated}

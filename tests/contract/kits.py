"""The drivers the contract suite runs against: one kit per driver, in each role's table.

A kit hands the suite one driver with what it needs around it (a node, a host, a cluster
or a volume it can serve), a clock (`advance`) that moves time the way that driver needs
(fleet time for the simulated drivers; for the agent driver, also one round of its host's
agent), and the optional capabilities the driver has (`supports`): the suite runs those,
and checks that every other one is refused with `PermanentProviderError`, never skipped.
A kit factory takes a scratch directory and is a context manager (some kits run an engine
or an agent). Another driver joins the suite by one entry in its role's table
(`HOST_KITS`, `FLAVOUR_KITS`, `STORAGE_KITS`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import pytest

from clusterplane.domain.enums import NodeRole
from clusterplane.providers.agent import AgentHostDriver
from clusterplane.providers.contracts import ClusterFlavour, HostDriver, StorageDriver
from clusterplane.providers.models import (
    HostSpec,
    InstanceSpec,
    NodeAccess,
    NodeUser,
    VolumeSpec,
)
from clusterplane.providers.shared_directory import SharedDirectoryStorage
from clusterplane.simulation.flavour import SimulatedFlavour
from clusterplane.simulation.hosts import SimulatedHostDriver
from clusterplane.simulation.storage import SimulatedStorage
from tests.support.check_scripts import commands
from tests.support.engine import make_engine
from tests.support.inprocess_agent import InProcessAgent

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


class Capability(StrEnum):
    """A host driver's optional features (a driver without one refuses it)."""

    REBOOT = "reboot"  # reboot and power-cycle in place
    CHECKS = "checks"  # active checks (`providers.contracts.HostChecks`)


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
    supports: frozenset[Capability] = frozenset(Capability)


@dataclass
class FlavourKit(Clock):
    flavour: ClusterFlavour = field(default_factory=SimulatedFlavour)
    node: InstanceSpec = NODE
    cluster_types: tuple[str, ...] = ("SLURM", "KUBERNETES")


@dataclass
class StorageKit(Clock):
    storage: StorageDriver = field(default_factory=SimulatedStorage)
    volume: VolumeSpec = VOLUME


@dataclass
class AgentKit(HostKit):
    """The agent driver over the real port (an in-process engine's database), with its
    host's agent (real convergence, checks and client) taking one round per `advance`."""

    agent: InProcessAgent | None = None

    def advance(self) -> datetime:
        now = super().advance()
        assert self.agent is not None
        self.agent.round()
        return now


@contextmanager
def agent_host_kit(scratch: Path) -> Iterator[HostKit]:
    if os.geteuid() != 0:
        pytest.skip("the agent makes accounts and owns their homes to them: it needs root")
    with contextmanager(make_engine)(scratch) as engine:
        agent = InProcessAgent(engine, scratch, "agent-1", checks=commands(scratch / "checks"))
        access = NodeAccess(
            users=(NodeUser("ubuntu", 20001),), ssh_user_ca_keys=("ssh-ed25519 AAAAC3 ca",)
        )
        node = replace(
            NODE,
            host_name=agent.name,
            region="test-1",
            driver="agent",
            host_id=agent.host_id,
            access=access,
        )
        yield AgentKit(
            host=AgentHostDriver(engine.app.agent_hosts),
            node=node,
            host_spec=HostSpec(agent.name, "test-1", "H100_SXM", 8, "agent", agent.host_id),
            supports=frozenset({Capability.CHECKS}),
            step=timedelta(seconds=5),
            horizon=timedelta(minutes=5),
            agent=agent,
        )


Kit = Callable[[Path], AbstractContextManager[HostKit]]
HOST_KITS: dict[str, Kit] = {
    "simulated": lambda scratch: nullcontext(HostKit(host=SimulatedHostDriver(seed=11))),
    "agent": agent_host_kit,
}
FLAVOUR_KITS: dict[str, Callable[[Path], AbstractContextManager[FlavourKit]]] = {
    "simulated": lambda scratch: nullcontext(FlavourKit(flavour=SimulatedFlavour(seed=11))),
}
STORAGE_KITS: dict[str, Callable[[Path], AbstractContextManager[StorageKit]]] = {
    "simulated": lambda scratch: nullcontext(StorageKit(storage=SimulatedStorage(seed=11))),
    "shared_directory": lambda scratch: nullcontext(
        StorageKit(storage=SharedDirectoryStorage(_shared(scratch), quotas="off"))
    ),
}


def _shared(scratch: Path) -> Path:
    root = scratch / "shared"
    root.mkdir(exist_ok=True)
    return root

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
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from clusterplane.agent.runtimes import Registry
from clusterplane.domain.agent_protocol import GpuInfo, Inventory
from clusterplane.domain.enums import NodeRole
from clusterplane.providers.agent import AgentHostDriver
from clusterplane.providers.contracts import ClusterFlavour, HostDriver, StorageDriver
from clusterplane.providers.kubernetes import AgentKubernetesFlavour
from clusterplane.providers.models import (
    HostSpec,
    InstanceSpec,
    NodeAccess,
    NodeUser,
    VolumeSpec,
)
from clusterplane.providers.shared_directory import SharedDirectoryStorage
from clusterplane.providers.slurm.flavour import AgentSlurmFlavour
from clusterplane.settings import SlurmSettings
from clusterplane.simulation.flavour import SimulatedFlavour
from clusterplane.simulation.hosts import SimulatedHostDriver
from clusterplane.simulation.storage import SimulatedStorage
from tests.support.check_scripts import commands
from tests.support.engine import Engine, make_engine
from tests.support.hosts import Host, HostNetwork
from tests.support.inprocess_agent import MODEL, InProcessAgent
from tests.support.kubernetes import (
    KUBERNETES_SETTINGS,
    kubernetes_options,
    machine_to_ourselves,
    missing_pieces,
    namespaced_kubernetes,
)
from tests.support.slurm import make_gpu_devices, namespaced_slurm, slurm_installed

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


class FlavourCapability(StrEnum):
    """A cluster flavour's optional features."""

    # State of its own in what it returns, which it reads back (and refuses when it
    # cannot); a flavour without keeps no state (the port answers) and ignores any.
    STATE = "state"


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
    supports: frozenset[FlavourCapability] = frozenset(FlavourCapability)


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


@dataclass
class AgentFlavourKit(FlavourKit):
    """A flavour over the real port (an in-process engine's database) whose hosts' agents
    each take one round per `advance`, after `pause` seconds of real time (for the
    daemons they run)."""

    agents: tuple[InProcessAgent, ...] = ()
    pause: float = 0.0

    def advance(self) -> datetime:
        now = super().advance()
        time.sleep(self.pause)
        for agent in self.agents:
            agent.round()
        return now

    def until(self, probe: Callable[[datetime], bool], what: str) -> None:
        """Advance until `probe(now)` holds; fail past the horizon, saying `what`."""
        deadline = self.now + self.horizon
        while not probe(self.now):
            assert self.now < deadline, f"{what} did not happen within the horizon"
            self.advance()


SLURM_CONTROLLER = "ctl"


@contextmanager
def slurm_flavour_kit(scratch: Path) -> Iterator[FlavourKit]:
    """`AgentSlurmFlavour` with a real Slurm: a controller host and one GPU worker (the
    kit's node, already a member) in namespaces (tests/support/hosts.py), each with an
    in-process agent whose `slurm` runtime runs the daemons on its host. Their nodes are
    published as the agent host driver does, for a cluster that is a real row."""
    if os.geteuid() != 0:
        pytest.skip("Slurm's hosts are namespaces with device files: they need root")
    if not slurm_installed():
        pytest.skip("Slurm is not installed: run scripts/ensure-slurm.sh")
    if subprocess.run(["unshare", "--uts", "true"], check=False).returncode:
        pytest.skip("this machine does not allow new namespaces (unshare failed)")
    with contextmanager(make_engine)(scratch) as engine, HostNetwork() as network:
        cluster_id = _slurm_cluster(engine)
        controller = network.add_host(SLURM_CONTROLLER)
        worker = network.add_host(NODE.node_name)
        devices = make_gpu_devices(worker, str(network.host_root))
        agents = (
            _slurm_agent(engine, scratch, controller, ()),
            _slurm_agent(engine, scratch, worker, devices),
        )
        node = replace(
            NODE,
            cluster_id=cluster_id,
            host_name=worker.name,
            region="test-1",
            driver="agent",
            host_id=agents[1].host_id,
            slurm_shm_size_gib=1,
        )
        control = replace(
            node,
            instance_id="i-contract-ctl",
            role=NodeRole.CONTROL_PLANE,
            node_name=controller.name,
            host_name=controller.name,
            host_id=agents[0].host_id,
            num_gpus=0,
        )
        settings = SlurmSettings(state_dir=f"{network.host_root}/slurm", slurmd_timeout_seconds=5)
        kit = AgentFlavourKit(
            flavour=AgentSlurmFlavour(engine.app.agent_hosts, settings),
            node=node,
            cluster_types=("SLURM",),
            supports=frozenset(),
            step=timedelta(seconds=5),
            horizon=timedelta(minutes=5),
            agents=agents,
            pause=0.1,
        )
        hosts = AgentHostDriver(engine.app.agent_hosts)
        try:
            _serve(kit, hosts, (control, node))
            yield kit
        finally:
            kit.until(
                lambda now: all(hosts.release(s, {}, now).done for s in (node, control)),
                "the hosts' release",
            )


def _serve(kit: AgentFlavourKit, hosts: AgentHostDriver, specs: tuple[InstanceSpec, ...]) -> None:
    """Publish the nodes as the host driver does, then join them in order as the lifecycle
    does (the controller first: a worker waits for slurmctld)."""
    states = [hosts.prepare(spec, kit.now).state for spec in specs]
    kit.until(
        lambda now: all(
            hosts.describe(s, st, now).done for s, st in zip(specs, states, strict=True)
        ),
        "the hosts' bring-up",
    )
    for spec in specs:
        kit.until(
            lambda now, spec=spec: kit.flavour.join_node(spec, now).done,
            f"{spec.node_name} joining",
        )


class _BringsUpFirst:
    """A flavour whose cluster is brought up (`start`) before the first verb that needs
    it: the bring-up steps of a flavour on agent hosts touch no host, and a real
    Kubernetes cluster per step test would cost half a minute each."""

    def __init__(self, flavour: ClusterFlavour, start: Callable[[], None]):
        self._flavour = flavour
        self._start: Callable[[], None] | None = start

    def __getattr__(self, name: str) -> Any:
        verb = getattr(self._flavour, name)
        if name not in ("start_step", "poll_step", "apply_config") and self._start is not None:
            start, self._start = self._start, None
            start()
        return verb


@contextmanager
def kubernetes_flavour_kit(scratch: Path) -> Iterator[FlavourKit]:
    """`AgentKubernetesFlavour` with a real Kubernetes: a control-plane host and one GPU
    worker (the kit's node, a member once a verb needs the cluster) in namespaces, each
    with an in-process agent whose `kubernetes` runtime runs the daemons on its host."""
    if os.geteuid() != 0:
        pytest.skip("Kubernetes' hosts are namespaces with device files: they need root")
    if missing_pieces():
        pytest.skip("Kubernetes is not installed: run make kubernetes")
    if subprocess.run(["unshare", "--uts", "true"], check=False).returncode:
        pytest.skip("this machine does not allow new namespaces (unshare failed)")
    with (
        machine_to_ourselves(),
        contextmanager(make_engine)(scratch) as engine,
        HostNetwork() as network,
    ):
        cluster_id = _cluster(engine, "KUBERNETES")
        control_host = network.add_host(SLURM_CONTROLLER)
        worker = network.add_host(NODE.node_name)
        devices = make_gpu_devices(worker, str(network.host_root))
        options = kubernetes_options(str(network.host_root))
        agents = tuple(
            _agent(engine, scratch, host, gpus, "kubernetes", namespaced_kubernetes(host, options))
            for host, gpus in ((control_host, ()), (worker, devices))
        )
        node = replace(
            NODE,
            cluster_id=cluster_id,
            host_name=worker.name,
            region="test-1",
            driver="agent",
            host_id=agents[1].host_id,
            cluster_type="KUBERNETES",
        )
        control = replace(
            node,
            instance_id="i-contract-ctl",
            role=NodeRole.CONTROL_PLANE,
            node_name=control_host.name,
            host_name=control_host.name,
            host_id=agents[0].host_id,
            num_gpus=0,
        )
        kit = AgentFlavourKit(
            node=node,
            cluster_types=("KUBERNETES",),
            supports=frozenset(),
            step=timedelta(seconds=5),
            horizon=timedelta(minutes=5),
            agents=agents,
            pause=0.5,
        )
        flavour = AgentKubernetesFlavour(engine.app.agent_hosts, KUBERNETES_SETTINGS)
        hosts = AgentHostDriver(engine.app.agent_hosts)
        kit.flavour = _BringsUpFirst(flavour, lambda: _serve(kit, hosts, (control, node)))  # type: ignore[assignment]
        try:
            yield kit
        finally:
            kit.until(
                lambda now: all(hosts.release(s, {}, now).done for s in (node, control)),
                "the hosts' release",
            )


def _cluster(engine: Engine, cluster_type: str) -> str:
    """A cluster's row (its CA, its flavour's secrets: what the port hands out)."""
    body: dict[str, Any] = {
        "cluster_name": "contract",
        "billing_type": "ON_DEMAND",
        "cluster_type": cluster_type,
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "region": "test-1",
        "nvidia_version_id": "cu128-drv570-ubuntu2204",
    }
    if cluster_type == "SLURM":
        body["slurm_shm_size_gib"] = 1
    response = engine.client.post("/v1/compute/clusters", json=body, headers=engine.headers())
    assert response.status_code == 200, response.text
    return str(response.json()["cluster_id"])


def _agent(
    engine: Engine,
    scratch: Path,
    host: Host,
    devices: tuple[str, ...],
    runtime: str,
    plugin: Any,
) -> InProcessAgent:
    """An agent for `host` (its address, its GPUs' device files) running `runtime` there."""
    inventory = Inventory(
        hostname=host.name,
        gpu_type="H100_SXM" if devices else None,
        gpus=[GpuInfo(index=i, model=MODEL, device_path=d) for i, d in enumerate(devices)],
        gpu_source="config" if devices else "none",
        num_cpu_cores=4,
        memory_gib=4,
        ip_address=host.address,
    )
    registry = Registry()
    registry.register(runtime, lambda: plugin)
    return InProcessAgent(
        engine, scratch, host.name, inventory=inventory, registry=registry, reconverge=True
    )


def _slurm_cluster(engine: Engine) -> str:
    """A SLURM cluster's row (its munge key is the port's `cluster_secret`)."""
    body = {
        "cluster_name": "contract",
        "billing_type": "ON_DEMAND",
        "cluster_type": "SLURM",
        "slurm_shm_size_gib": 1,
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "region": "test-1",
        "nvidia_version_id": "cu128-drv570-ubuntu2204",
    }
    response = engine.client.post("/v1/compute/clusters", json=body, headers=engine.headers())
    assert response.status_code == 200, response.text
    return str(response.json()["cluster_id"])


def _slurm_agent(
    engine: Engine, scratch: Path, host: Host, devices: tuple[str, ...]
) -> InProcessAgent:
    """An agent for `host` (its address, its GPUs' device files) running Slurm there."""
    inventory = Inventory(
        hostname=host.name,
        gpu_type="H100_SXM" if devices else None,
        gpus=[GpuInfo(index=i, model=MODEL, device_path=d) for i, d in enumerate(devices)],
        gpu_source="config" if devices else "none",
        num_cpu_cores=4,
        memory_gib=4,
        ip_address=host.address,
    )
    registry = Registry()
    registry.register("slurm", lambda: namespaced_slurm(host))
    return InProcessAgent(
        engine, scratch, host.name, inventory=inventory, registry=registry, reconverge=True
    )


Kit = Callable[[Path], AbstractContextManager[HostKit]]
HOST_KITS: dict[str, Kit] = {
    "simulated": lambda scratch: nullcontext(HostKit(host=SimulatedHostDriver(seed=11))),
    "agent": agent_host_kit,
}
FLAVOUR_KITS: dict[str, Callable[[Path], AbstractContextManager[FlavourKit]]] = {
    "simulated": lambda scratch: nullcontext(FlavourKit(flavour=SimulatedFlavour(seed=11))),
    "agent-slurm": slurm_flavour_kit,
    "agent-kubernetes": kubernetes_flavour_kit,
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

"""A real Slurm cluster on namespaced test hosts, driven through the node runtime.

`SlurmTestCluster(network)` describes a cluster whose controller and workers are hosts of
a `HostNetwork`; `add_worker(name)` makes a host with 8 fake GPUs (character devices made
with mknod), `add_login(name)` a login host with the client tools' configuration, and
`converge(host)` runs `clusterplane.agent.slurm.SlurmRuntime` for it in this process,
its commands entering the host through `nsenter` (`HostContext`). `namespaced_slurm(host)`
is the agent's own `slurm` runtime plug-in on such a host, for an in-process agent
(`tests.support.inprocess_agent`); `make_gpu_devices` gives a host its fake GPUs.
The files come from `clusterplane.providers.slurm.render_files`, as the server sends them.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clusterplane.agent.runtimes import RuntimeContext
from clusterplane.agent.slurm.plugin import SlurmPlugin
from clusterplane.agent.slurm.runtime import SlurmRuntime
from clusterplane.providers.slurm import (
    SlurmClusterSpec,
    SlurmNode,
    SlurmStartupScripts,
    config_generation,
    render_files,
    worker_node_conf,
)
from tests.support.hosts import Host, HostNetwork

GPUS_PER_WORKER = 8
SLURM_BINARIES = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/srun")


@dataclass
class HostContext:
    """`SlurmHost` for a namespaced test host."""

    host: Host
    state_dir: Path

    def path(self, absolute: str) -> Path:
        return self.host.path(absolute)

    def run(
        self, argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.host.run(argv, timeout=timeout, env=env, check=False)

    def processes(self) -> list[int]:
        return self.host.processes()


def slurm_installed() -> bool:
    return all(Path(binary).exists() for binary in SLURM_BINARIES)


def gpu_devices(root: str, count: int = GPUS_PER_WORKER) -> tuple[str, ...]:
    """The fake GPUs' device files, the same paths on every host."""
    return tuple(f"{root}/dev/nvidia{i}" for i in range(count))


def make_gpu_devices(host: Host, root: str, count: int = GPUS_PER_WORKER) -> tuple[str, ...]:
    """Character devices (NVIDIA's major number) at `gpu_devices(root)` on `host`."""
    devices = gpu_devices(root, count)
    host.path(f"{root}/dev").mkdir()
    for index, device in enumerate(devices):
        os.mknod(host.path(device), 0o666 | stat.S_IFCHR, os.makedev(195, index))
    return devices


def namespaced_slurm(host: Host) -> SlurmPlugin:
    """The agent's `slurm` runtime (munge key from the assignment's secrets included),
    its daemons run on `host`; what it started is recorded in the agent's state dir."""

    def context(ctx: RuntimeContext) -> HostContext:
        return HostContext(host, ctx.state_dir)

    return SlurmPlugin(host=context)


class SlurmTestCluster:
    def __init__(
        self,
        network: HostNetwork,
        *,
        name: str = "lab",
        scripts: SlurmStartupScripts | None = None,
        slurmd_timeout_s: int = 10,
        shm_size_gib: int = 1,
        user: str = "root",
    ):
        self.user = user  # the cluster's (non-root) user that submits jobs in tests
        self.network = network
        self.root = str(network.host_root)
        self.controller = network.add_host("ctl")
        self.workers: dict[str, Host] = {}
        self.logins: dict[str, Host] = {}
        self.runtimes: dict[str, SlurmRuntime] = {}
        self.munge_key = base64.b64encode(secrets.token_bytes(128)).decode()
        self.spec = SlurmClusterSpec(
            name=name,
            controller_name=self.controller.name,
            controller_address=self.controller.address,
            shm_size_gib=shm_size_gib,
            startup_scripts=scripts or SlurmStartupScripts(),
            state_dir=f"{self.root}/slurm/{name}",
            slurmd_timeout_s=slurmd_timeout_s,
        )
        self.runtimes[self.controller.name] = self._runtime(self.controller)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": f"{self.spec.state_dir}/etc/slurm.conf"}

    def _runtime(self, host: Host) -> SlurmRuntime:
        return SlurmRuntime(HostContext(host, host.path(f"{self.root}/agent")))

    def gpu_devices(self) -> tuple[str, ...]:
        return gpu_devices(self.root)

    def add_worker(self, name: str) -> Host:
        host = self.network.add_host(name)
        devices = make_gpu_devices(host, self.root)
        node = SlurmNode(name, host.address, devices, cpus=4, memory_mib=4000)
        self.spec = replace(self.spec, nodes=(*self.spec.nodes, node))
        self.workers[name] = host
        self.runtimes[name] = self._runtime(host)
        return host

    def add_login(self, name: str) -> Host:
        host = self.network.add_host(name)
        self.logins[name] = host
        self.runtimes[name] = self._runtime(host)
        return host

    def section(self, host: Host) -> dict[str, Any]:
        files = render_files(self.spec)
        common = {
            "cluster": self.spec.name,
            "controller_address": self.spec.controller_address,
            "controller_port": self.spec.controller_port,
            "munge_key": self.munge_key,
            "state_dir": self.spec.state_dir,
        }
        if host is self.controller:
            return {**common, "role": "controller", "files": files.controller}
        if host.name in self.logins:
            return {**common, "role": "login", "files": files.login}
        node = next(node for node in self.spec.nodes if node.name == host.name)
        return {
            **common,
            "role": "worker",
            "files": files.worker,
            "node_name": node.name,
            "node_conf": worker_node_conf(node),
            "config_generation": config_generation(files),
            "gpu_devices": list(node.gpu_devices),
            "shm_size_gib": self.spec.shm_size_gib,
        }

    def converge(self, host: Host) -> dict[str, Any]:
        return self.runtimes[host.name].converge(self.section(host))

    @property
    def control(self) -> SlurmRuntime:
        return self.runtimes[self.controller.name]

    def on_controller(
        self, argv: Sequence[str], *, timeout: float = 30, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A Slurm client command on the controller host (as `user` when given)."""
        prefix = ["runuser", "-u", user, "--"] if user else []
        return self.controller.run(
            ["timeout", str(int(timeout)), *prefix, *argv], timeout=timeout + 5, env=self.env
        )

"""A fleet of enrolled test machines: real `clusterplane agent` processes on namespaced
hosts, each with its own accounts, sshd and GPUs, and a real server they reach.

`AgentFleet(workdir)` (a context manager) makes a `HostNetwork` (tests/support/hosts.py),
a `ServerProcess` listening on the bridge's own address (`network.gateway`, 127.1.<i>.1:
the hosts have no route anywhere else; this process reaches it there too) with a fleet
file (`AGENT_FLEET` by default, whose region `agents-1` has no fleet-file hosts; the
server's database and log go to `workdir`), and `shared_fs`, one directory at the same
path on every host and here: the operator's shared filesystem that volumes live on.

`fleet.add_host(name, gpus=8)` makes an `AgentHost` and enrolls it with a fresh join token
(0 GPUs makes a controller or login machine). An `AgentHost` is a `Host` of the network
made to behave as a separate machine:
- /etc and /var are its own (overlayfs over the machine's: what the agent, sshd, munge or
  Slurm write there lands in the host's private directory; the machine's files never
  change; /etc/hostname names the host), /home is an empty directory of its own; the
  agent runs with `[node] root = "/"`;
- fake GPU character devices `<network.host_root>/dev/nvidia<N>`, one path on every host
  (each host has its own `host_root`), listed in the agent's config;
- its own sshd (`NodeSshd`) on port 22 of its address, which the agent's `sshd_reload`
  reloads; its host key is in `fleet.known_hosts`;
- a real agent (`AgentProcess`) inside its network, UTS and mount namespaces with its own
  config (hostname = the host's name, ip_address = its bridge address) and state dir under
  the host's private directory, a kernel log file for `kernel_xid`, and on GPU machines
  healthy active-check commands (tests/support/check_scripts.py).

`close()` stops the agents, the sshds and the server, then closes the network, which
fails (`LeftoverError`, with `verify`) on any process still in a host (a daemon the agent
started and did not stop), a namespace, link, mount or directory left behind.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.support import check_scripts
from tests.support.agents import (
    AGENT_FLEET,
    REGION,
    AgentProcess,
    agent_server,
    append_xid,
    enrolled,
    fake_pci_bus_ids,
    issue_token,
    wait_for,
)
from tests.support.hosts import Host, HostNetwork
from tests.support.server import ServerProcess
from tests.support.sshd import NodeSshd, ssh

GPU_MODEL = "NVIDIA H100 80GB HBM3"  # the fleet's H100_SXM
OWN_DIRECTORIES = ("/etc", "/var")  # overlays: the machine's content, the host's changes
OWN_EMPTY_DIRECTORIES = ("/home",)


class AgentHost:
    """One enrolled machine of an `AgentFleet` (see the module docstring)."""

    def __init__(
        self,
        fleet: AgentFleet,
        host: Host,
        *,
        gpus: int,
        sshd: bool,
        config: dict[str, Any],
    ):
        self.fleet = fleet
        self.host = host
        self.name, self.address = host.name, host.address
        self.dir = host.private_dir
        self.state = self.dir / "agent-state"
        self.config = self.dir / "agent.toml"
        self.kernel_log = self.dir / "kern.log"
        self.kernel_log.write_text("")
        for path in OWN_DIRECTORIES:
            host.overlay(path)
        for path in OWN_EMPTY_DIRECTORIES:
            host.own_dir(path)
        host.path("/etc/hostname").write_text(f"{self.name}\n")
        self.gpu_devices = self._make_gpus(gpus)
        self.pci_bus_ids = fake_pci_bus_ids(gpus)
        self.sshd = NodeSshd(host).start() if sshd else None
        self.config.write_text(self._config(config))
        self.own_mounts = host.mounts()  # what the harness mounted; the agent's come later
        self.agent = AgentProcess(self, fleet.server)

    def _make_gpus(self, count: int) -> list[str]:
        root = self.fleet.network.host_root
        devices = [f"{root}/dev/nvidia{index}" for index in range(count)]
        if devices:
            self.host.path(f"{root}/dev").mkdir()
        for index, device in enumerate(devices):
            os.mknod(self.host.path(device), 0o666 | stat.S_IFCHR, os.makedev(195, index))
        return devices

    def _config(self, overrides: dict[str, Any]) -> str:
        """agent.toml: this machine's facts, then `overrides` (a table merges key by key)."""
        sshd_reload = self.sshd.reload_command if self.sshd else []
        top: dict[str, Any] = {
            "hostname": self.name,
            "ip_address": self.address,
            "heartbeat_seconds": 0.5,
        }
        sections: dict[str, dict[str, Any]] = {
            "gpu": {
                "source": "config",
                "model": GPU_MODEL if self.gpu_devices else "",
                "count": len(self.gpu_devices),
                "devices": self.gpu_devices,
                "pci_bus_ids": self.pci_bus_ids,
            },
            "health": {"kernel_log": str(self.kernel_log), "poll_seconds": 0.2},
            "node": {
                "root": "/",
                "shared_fs": str(self.fleet.shared_fs),
                "set_kernel_hostname": True,
                "sshd_reload": sshd_reload,
            },
        }
        if self.gpu_devices:  # healthy active checks, as an operator configures DCGM etc.
            for kind, argv in check_scripts.commands(self.dir / "checks").items():
                sections[f"checks.{kind}"] = {"command": argv}
        for key, value in overrides.items():
            if isinstance(value, dict):
                sections.setdefault(key, {}).update(value)
            else:
                top[key] = value
        lines = [f"{key} = {_toml(value)}" for key, value in top.items()]
        for name, values in sections.items():
            lines += [f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in values.items())]
        return "\n".join(lines) + "\n"

    # what AgentProcess needs -------------------------------------------------------------
    def enter(self) -> list[str]:
        return self.host.command([])

    # the machine, as a test looks at it ----------------------------------------------------
    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.host.run(argv, **kwargs)

    def path(self, host_path: str | Path) -> Path:
        return self.host.path(host_path)

    def hostname(self) -> str:
        return self.run(["hostname"]).stdout.strip()

    def entries(self, database: str, name: str) -> int:
        """How many entries named `name` the host's own /etc/<database> has."""
        text = self.path(f"/etc/{database}").read_text()
        return sum(1 for line in text.splitlines() if line.split(":")[0] == name)

    def agent_mounts(self) -> list[str]:
        """Mount points in the host that the harness did not make (volumes, ...)."""
        own = list(self.own_mounts)
        extra = []
        for point in self.host.mounts():
            if point in own:
                own.remove(point)
            else:
                extra.append(point)
        return extra

    def kernel_xid(self, gpu: int, code: int) -> None:
        append_xid(self.kernel_log, self.pci_bus_ids[gpu], code)

    def ssh(self, login: str, identity: Path, command: str) -> subprocess.CompletedProcess[str]:
        """`command` over real OpenSSH from this machine to this host's sshd."""
        return ssh(self.address, login, identity, command, known_hosts=self.fleet.known_hosts)

    def stop(self) -> None:
        """Stop the agent, then sshd (whatever the agent started stays, as on a machine)."""
        self.agent.stop()
        if self.sshd is not None:
            self.sshd.stop()


def _toml(value: Any) -> str:
    """A TOML value: JSON strings, numbers and lists are TOML too; an object becomes an
    inline table (`[runtimes] kubernetes = {base_dir = "..."}`)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


class AgentFleet:
    """Agent hosts on one test network, and the server they enrolled with."""

    def __init__(
        self,
        workdir: Path,
        *,
        silence_seconds: float = 30.0,
        server_args: tuple[str, ...] = (),
        fleet_yaml: str = AGENT_FLEET,
        time_scale: float = 600.0,
        agent_config: dict[str, Any] | None = None,
        server_toml: str = "",
    ):
        self.agent_config = agent_config or {}  # agent.toml overrides for every host
        self.network = HostNetwork()
        self.hosts: dict[str, AgentHost] = {}
        self.closed = False
        try:
            self.shared_fs = self.network.workdir / "shared"
            self.shared_fs.mkdir(mode=0o755)
            self.known_hosts = self.network.workdir / "known_hosts"
            self.known_hosts.write_text("")
            self.server: ServerProcess = agent_server(
                workdir,
                silence_seconds=silence_seconds,
                host=self.network.gateway,
                extra_args=server_args,
                fleet_yaml=fleet_yaml,
                time_scale=time_scale,
                shared=self.shared_fs,
                # `{host_root}` names the path that is each host's own (tests/support/hosts.py)
                settings_toml=server_toml.format(host_root=self.network.host_root),
            ).start()
        except BaseException:
            self.network.close(verify=False)
            raise

    def admin(self) -> httpx.Client:
        return self.server.client()

    def add_host(
        self,
        name: str,
        *,
        gpus: int = 8,
        sshd: bool = True,
        config: dict[str, Any] | None = None,
        token: dict[str, Any] | None = None,
        wait: bool = True,
    ) -> AgentHost:
        """A new machine whose agent enrolled (join token: a fresh one in `REGION`, or
        `token`, an answer of `issue_token`) and reported idle; with `wait=False` the agent
        is only started (hosts then enroll side by side: `wait_enrolled`). `config`
        overrides agent.toml keys after the fleet's `agent_config` (`{"num_cpu_cores": 4,
        "labels": {"rack": "r1"}}`)."""
        overrides = {**self.agent_config}
        for key, value in (config or {}).items():
            merged = isinstance(value, dict) and isinstance(overrides.get(key), dict)
            overrides[key] = {**overrides[key], **value} if merged else value
        machine = AgentHost(
            self, self.network.add_host(name), gpus=gpus, sshd=sshd, config=overrides
        )
        self.hosts[name] = machine
        if machine.sshd is not None:
            with self.known_hosts.open("a") as known:
                known.write(machine.sshd.known_hosts_line())
        with self.admin() as http:
            secret = (token or issue_token(http, REGION))["token"]
        machine.agent.start(secret)
        if wait:
            self.wait_enrolled(name)
        return machine

    def wait_enrolled(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """The host's agent view once its agent enrolled and reported idle."""
        return self.wait_applied(name, 0, "idle", timeout)

    def publish(self, name: str, assignment: dict[str, Any] | None) -> int:
        """Publish a host's assignment by hand (None: return it clean); its generation."""
        path = f"/admin/v1/agents/{name}/assignment"
        with self.admin() as http:
            response = http.put(path, json=assignment) if assignment else http.delete(path)
        assert response.status_code == 200, response.text
        generation: int = response.json()["generation"]
        return generation

    def wait_applied(
        self, name: str, generation: int, phase: str, timeout: float = 15.0
    ) -> dict[str, Any]:
        """The host's agent view once its agent applied `generation` with `phase` (on a
        timeout, the error shows the end of the agent's log)."""
        with self.admin() as http:
            try:
                return wait_for(
                    lambda: enrolled(http, name, generation, phase),
                    f"{name} to apply generation {generation} ({phase})",
                    timeout,
                )
            except AssertionError as exc:
                tail = self.hosts[name].agent.log()[-3000:]
                raise AssertionError(f"{exc}\nagent log of {name} (end):\n{tail}") from None

    def __enter__(self) -> AgentFleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(verify=exc_type is None)

    def close(self, *, verify: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            for machine in self.hosts.values():
                machine.stop()
            self.server.stop()
        finally:
            self.network.close(verify=verify)

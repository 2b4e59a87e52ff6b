"""Node agents for tests: fake hosts on this machine and real `clusterplane agent` processes.

`FakeHost` is a directory that plays one host: a root (`root/etc/passwd`...) with its own
shared filesystem at `/shared`, fake GPU character devices (`dev/nvidiaN`, made with
mknod), a kernel log file the test appends `NVRM: Xid` lines to, a state dir and an agent
config, plus the host's own mount and UTS namespaces, held by a `sleep` process
(`unshare --mount --uts`): mounts and the host name live there, survive agent restarts as
on a real host, and vanish with `close()`. `AgentProcess` runs the agent for any
`AgentMachine` (a `FakeHost`, or an `AgentHost` of tests/support/agent_fleet.py) against a
`ServerProcess`, inside its namespaces (`nsenter`). `AGENT_FLEET` is a fleet whose
region `agents-1` has no fleet-file hosts: every host there joined by enrollment;
`agent_server(..., shared=DIR)` makes that region's volumes directories of DIR.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest

from tests.support.server import BIN, ServerProcess

T = TypeVar("T")
REGION = "agents-1"
DRIVER_VERSION = "cu128-drv570-ubuntu2204"
AGENT_FLEET = f"""
profiles:
  h100: {{gpu_type: H100_SXM, num_gpus: 8, num_cpu_cores: 64, memory_gib: 512}}
regions:
  - name: {REGION}
    network: 10.230.0.0/24
    storage_tib: 10
    control_plane: {{nodes_per_cluster: 1, num_cpu_cores: 8, memory_gib: 32}}
    driver_versions:
      - {{id: {DRIVER_VERSION}, cuda_version: "12.8", nvidia_driver_version: "570",
          os: ubuntu-22.04}}
    fabrics: []
"""


def needs_root() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("agent hosts need root (mknod, mount namespaces) and unshare")


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def agent_server(
    workdir: Path,
    *,
    silence_seconds: float = 30.0,
    host: str = "127.0.0.1",
    extra_args: tuple[str, ...] = (),
    fleet_yaml: str = AGENT_FLEET,
    time_scale: float = 600.0,
    shared: Path | None = None,
    settings_toml: str = "",
) -> ServerProcess:
    """A server for agent hosts; `shared` makes the region's volumes directories of it,
    `settings_toml` adds configuration (one file for both)."""
    fleet = workdir / "agent-fleet.yaml"
    fleet.write_text(fleet_yaml)
    config: tuple[str, ...] = ()
    if shared is not None:
        settings_toml += f'\n[storage]\nshared_directories = ["{REGION}={shared}"]\n'
    if settings_toml:
        settings = workdir / "clusterplane.toml"
        settings.write_text(settings_toml)
        config = ("--config", str(settings))
    return ServerProcess(
        workdir,
        fleet=fleet,
        host=host,
        time_scale=time_scale,
        extra_args=(
            "--agent-silence-seconds",
            str(silence_seconds),
            "--agent-long-poll-seconds",
            "2",
            *extra_args,
            *config,
        ),
    )


def fake_pci_bus_ids(gpus: int) -> list[str]:
    return [f"0000:{0x18 + 0x10 * i:02x}:00.0" for i in range(gpus)]


def append_xid(kernel_log: Path, pci_bus_id: str, code: int) -> None:
    """An `NVRM: Xid` line for the GPU at `pci_bus_id`, as the kernel logs it."""
    bus = pci_bus_id[5:10]
    with kernel_log.open("a") as log:
        log.write(f"NVRM: Xid (PCI:0000:{bus}): {code}, pid=4242, name=python, test\n")


class AgentMachine(Protocol):
    """What `AgentProcess` needs of a host: its files and how to enter it."""

    dir: Path  # where the agent's log goes
    state: Path
    config: Path

    def enter(self) -> list[str]: ...


class FakeHost:
    def __init__(self, base: Path, name: str, *, gpus: int = 8):
        self.name = name
        self.dir = base / name
        self.root = self.dir / "root"
        self.state = self.dir / "state"
        self.kernel_log = self.dir / "kern.log"
        self.config = self.dir / "agent.toml"
        (self.root / "etc").mkdir(parents=True, exist_ok=True)
        (self.root / "shared").mkdir()
        (self.root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        (self.root / "etc" / "group").write_text("root:x:0:\n")
        (self.root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
        (self.root / "etc" / "hostname").write_text(f"{name}\n")
        self.kernel_log.write_text("")
        devices = []
        (self.dir / "dev").mkdir(exist_ok=True)
        for index in range(gpus):
            device = self.dir / "dev" / f"nvidia{index}"
            os.mknod(device, 0o666 | 0o020000, os.makedev(195, index))
            devices.append(str(device))
        self.pci = fake_pci_bus_ids(gpus)
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--uts", "--propagation", "private", "sleep", "infinity"],
            start_new_session=True,
        )
        wait_for(self._namespaced, "the host's namespaces", timeout=5)
        self.config.write_text(
            f"""
hostname = "{name}"
heartbeat_seconds = 0.5
num_cpu_cores = 64
memory_gib = 512
[gpu]
source = "config"
model = "NVIDIA H100 80GB HBM3"
count = {gpus}
devices = {devices!r}
pci_bus_ids = {self.pci!r}
[health]
kernel_log = "{self.kernel_log}"
poll_seconds = 0.2
[node]
root = "{self.root}"
shared_fs = "/shared"
set_kernel_hostname = true
sshd_reload = []
""".replace("'", '"')
        )

    def _namespaced(self) -> bool:
        own = os.readlink("/proc/self/ns/mnt")
        return os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != own

    def close(self) -> None:
        """End the host's namespaces (and every mount in them)."""
        if self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait(10)

    def enter(self) -> list[str]:
        """The command prefix that runs a program inside this host's namespaces."""
        return ["nsenter", "-t", str(self.holder.pid), "--mount", "--uts", "--"]

    def hostname(self) -> str:
        return subprocess.run(
            [*self.enter(), "hostname"], capture_output=True, text=True, check=True
        ).stdout.strip()

    def mounts(self) -> list[str]:
        """Mount points under the host's root, in the host's mount namespace."""
        with open(f"/proc/{self.holder.pid}/mountinfo") as info:
            points = [line.split()[4] for line in info]
        return [p for p in points if p.startswith(str(self.root))]

    def kernel_xid(self, gpu: int, code: int) -> None:
        append_xid(self.kernel_log, self.pci[gpu], code)

    def entries(self, database: str, name: str) -> int:
        text = (self.root / "etc" / database).read_text()
        return sum(1 for line in text.splitlines() if line.split(":")[0] == name)


class AgentProcess:
    def __init__(self, host: AgentMachine, server: ServerProcess):
        self.host = host
        self.server = server
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = host.dir / "agent.log"

    def start(self, join_token: str | None = None) -> AgentProcess:
        args = [
            *self.host.enter(),
            str(BIN / "clusterplane"),
            "agent",
            "--server",
            self.server.base_url,
            "--state-dir",
            str(self.host.state),
            "--config",
            str(self.host.config),
        ]
        if join_token is not None:
            args += ["--join-token", join_token]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: the agent dies wherever it is; what it did to the host stays."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def issue_token(http: httpx.Client, region: str = REGION, **body: Any) -> dict[str, Any]:
    response = http.post("/admin/v1/join-tokens", json={"region": region, **body})
    assert response.status_code == 201, response.text
    token: dict[str, Any] = response.json()
    return token


def agent_view(http: httpx.Client, host: str) -> dict[str, Any]:
    response = http.get(f"/admin/v1/agents/{host}")
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def enrolled(http: httpx.Client, host: str, generation: int, phase: str) -> dict[str, Any] | None:
    """The agent view once it applied `generation` with `phase`, else None."""
    response = http.get(f"/admin/v1/agents/{host}")
    if response.status_code != 200:
        return None
    view: dict[str, Any] = response.json()
    if view["generation_applied"] == generation and view["phase"] == phase:
        return view
    return None

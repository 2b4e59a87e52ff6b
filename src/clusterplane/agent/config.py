"""The agent's configuration file (TOML), and what it defaults to.

Example: `packaging/agent.toml`. Every key is optional; a host without an NVIDIA driver
declares its GPUs here (model, count, device paths), a host with one is read through NVML.
Active checks run the command `[checks.<kind>]` names (kinds as in `domain.checks`); a
kind without one fails when asked for, never passes.
"""

from __future__ import annotations

import string
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clusterplane.domain.checks import CheckKind

# What a check command's arguments may name: "{level}" is the DCGM level ("" for others).
PLACEHOLDERS = frozenset({"kind", "level", "run_id"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuConfig(_Section):
    # "auto": NVML when a driver answers, else what follows; "nvml" or "config" forces one.
    source: str = Field(default="auto", pattern=r"^(auto|nvml|config)$")
    model: str = ""
    gpu_type: str | None = None  # the fleet's GPU type; derived from the model when unset
    count: int = Field(default=0, ge=0, le=64)
    devices: list[str] = Field(default_factory=list)  # e.g. /dev/nvidia0 ... (checked to exist)
    # PCI addresses in device order ("0000:3b:00.0"), so kernel-log XIDs name their GPU.
    pci_bus_ids: list[str] = Field(default_factory=list)
    memory_mib: int | None = None


class HealthConfig(_Section):
    kernel_log: str = "/dev/kmsg"  # a character device (kmsg records) or a plain file
    # Where XIDs come from: the kernel log, or NVML's XID events (never both: one report).
    xid_source: str = Field(default="kmsg", pattern=r"^(kmsg|nvml)$")
    poll_seconds: float = Field(default=2.0, gt=0)


class NodeConfig(_Section):
    # Paths below are inside `root` (tests point it at a temporary directory).
    root: str = "/"
    # The operator's shared filesystem, mounted on every host (NFS, Lustre, Weka...).
    shared_fs: str = "/mnt/clusterplane-shared"
    set_kernel_hostname: bool = True
    sshd_reload: list[str] = Field(default_factory=lambda: ["systemctl", "reload", "ssh"])


class CheckCommand(_Section):
    # argv of the command; it prints the figures as a JSON object and exits 0, or exits
    # non-zero when the check failed. "{level}", "{kind}" and "{run_id}" are filled in.
    command: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)

    @field_validator("command")
    @classmethod
    def _placeholders(cls, command: list[str]) -> list[str]:
        for arg in command:
            for _, name, spec, conversion in string.Formatter().parse(arg):
                if name is None:
                    continue
                if name not in PLACEHOLDERS or spec or conversion:
                    known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
                    raise ValueError(f"'{arg}' may name only {known}")
        return command


class AgentConfig(_Section):
    labels: dict[str, str] = Field(default_factory=dict)  # fabric, block, rack fallbacks
    hostname: str | None = None  # default: the machine's host name
    ip_address: str = ""
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    # How often the current assignment is applied again without a new generation: runtimes
    # restart dead daemons, re-register nodes and refresh what they report.
    converge_seconds: float = Field(default=15.0, gt=0)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    node: NodeConfig = Field(default_factory=NodeConfig)
    # The command that runs each kind of active check on this host (by kind).
    checks: dict[CheckKind, CheckCommand] = Field(default_factory=dict)
    # Overrides for hosts whose /proc does not say the truth (test hosts in namespaces).
    num_cpu_cores: int | None = None
    memory_gib: float | None = None
    infiniband_sysfs: str = "/sys/class/infiniband"
    # Host-local options of the flavour runtimes, `[runtimes.<name>]` (each runtime checks
    # its own): e.g. `[runtimes.kubernetes] binaries = {kubelet = "/opt/k8s/bin/kubelet"}`.
    runtimes: dict[str, dict[str, Any]] = Field(default_factory=dict)


def load(path: Path | None) -> AgentConfig:
    if path is None:
        return AgentConfig()
    with path.open("rb") as handle:
        return AgentConfig.model_validate(tomllib.load(handle))

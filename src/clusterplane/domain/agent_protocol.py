"""The node agent's wire protocol, shared by the agent and the server: pure and small.

What a host's agent and the control plane say to each other, in one place both import:

* `canonical_request(...)`: the bytes an agent signs with its Ed25519 key for every call
  after enrollment (method, path with query, timestamp, nonce, host id, body hash), and the
  header names that carry them. The server rebuilds the same bytes to verify.
* `Assignment`: a host's desired state, generation-numbered. The control plane publishes
  it; the agent pulls it (long-poll) and converges. An assignment with no `cluster_id`
  means "serve nobody": the agent returns the host clean.
* `StatusReport`: the agent's heartbeat and what happened (per-section results, phase).
* `AgentHealthEvent`: one health signal the agent saw (kernel log or NVML).
* `CheckRequest` / `CheckReport`: an active check the server asks for (in the answer to
  a status report, `StatusAnswer.checks`, until it is reported) and what the agent found
  running the command its config names for that kind.

Names and limits here are part of the protocol; change them only with a new version tag.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from clusterplane.domain.enums import NodePhase

PROTOCOL = "clusterplane-agent-v1"
HOST_HEADER = "x-clusterplane-host"
TIMESTAMP_HEADER = "x-clusterplane-timestamp"
NONCE_HEADER = "x-clusterplane-nonce"
SIGNATURE_HEADER = "x-clusterplane-signature"

NAME = r"^[a-z_][a-z0-9_.-]{0,31}$"  # a POSIX user or group name, as useradd accepts
PATH = r"^/[A-Za-z0-9._/-]{0,255}$"
RELATIVE = r"^[A-Za-z0-9._-][A-Za-z0-9._/-]{0,255}$"
HOSTNAME = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$"
LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


def canonical_request(
    *, method: str, path: str, timestamp: str, nonce: str, host_id: str, body: bytes
) -> bytes:
    """The exact bytes signed for one request; `path` includes its query string."""
    return "\n".join(
        (
            PROTOCOL,
            method.upper(),
            path,
            timestamp,
            nonce,
            host_id,
            hashlib.sha256(body).hexdigest(),
        )
    ).encode()


def _reject_nul(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_nul(key)
            _reject_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_nul(item)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        """No text anywhere holds a NUL (PostgreSQL text cannot): a 400, never a 500."""
        _reject_nul(data)
        return data


class GpuInfo(_Wire):
    index: int = Field(ge=0, le=63)
    model: str = Field(max_length=128)
    uuid: str | None = Field(default=None, max_length=128)
    memory_mib: int | None = Field(default=None, ge=0)
    pci_bus_id: str | None = Field(default=None, max_length=64)
    device_path: str | None = Field(default=None, max_length=256)


class Inventory(_Wire):
    """What a host has, as its agent found it (NVML, /proc, /sys) or its config says."""

    hostname: str = Field(pattern=HOSTNAME)
    gpu_type: str | None = Field(default=None, max_length=32)
    gpus: list[GpuInfo] = Field(default_factory=list, max_length=64)
    gpu_source: Literal["nvml", "config", "none"] = "none"
    driver_version: str | None = Field(default=None, max_length=64)
    cuda_version: str | None = Field(default=None, max_length=64)
    num_cpu_cores: int = Field(ge=0, le=100_000)
    memory_gib: float = Field(ge=0, le=10_000_000)
    ib_hcas: list[str] = Field(default_factory=list, max_length=64)
    ib_hca_type: str = Field(default="", max_length=64)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=32)
    ip_address: str = Field(default="", max_length=64)


class UserSpec(_Wire):
    name: str = Field(pattern=NAME)
    uid: int = Field(ge=1000, le=2**31 - 2)
    gid: int | None = Field(default=None, ge=1000, le=2**31 - 2)
    home: str | None = Field(default=None, pattern=PATH)
    shell: str = Field(default="/bin/bash", pattern=PATH)
    authorized_keys: list[str] = Field(default_factory=list, max_length=32)


class MountSpec(_Wire):
    """Bind-mount `source` (a directory of the operator's shared filesystem) at `target`."""

    volume_id: str = Field(max_length=64)
    source: str = Field(pattern=RELATIVE)
    target: str = Field(pattern=PATH)


class NodeSpec(_Wire):
    node_name: str = Field(max_length=128)
    instance_id: str = Field(max_length=64)
    role: str = Field(max_length=32)
    hostname: str = Field(pattern=HOSTNAME)


class Assignment(_Wire):
    """A host's desired state at one generation; no cluster means "return the host clean"."""

    generation: int = Field(ge=0)
    cluster_id: str | None = Field(default=None, max_length=64)
    node: NodeSpec | None = None
    users: list[UserSpec] = Field(default_factory=list, max_length=256)
    ssh_user_ca_keys: list[str] = Field(default_factory=list, max_length=8)
    mounts: list[MountSpec] = Field(default_factory=list, max_length=32)
    # File name -> content; written 0600 for the cluster only, wiped when the host leaves.
    secrets: dict[str, str] = Field(default_factory=dict, max_length=32)
    # Flavour runtimes by section name ("slurm", later "kubernetes"): opaque to the agent.
    runtimes: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=8)


class SectionResult(_Wire):
    ok: bool
    message: str = Field(default="", max_length=2000)
    details: dict[str, Any] = Field(default_factory=dict)


AgentPhase = Literal["idle", "converging", "ready", "failed", "cleaning"]

# The node phase an agent's phase means for the node it serves (None: serves no node).
NODE_PHASE_OF: dict[str, NodePhase | None] = {
    "idle": None,
    "cleaning": None,
    "converging": NodePhase.BOOTSTRAPPING,
    "ready": NodePhase.RUNNING,
    "failed": NodePhase.FAILED,
}


class StatusReport(_Wire):
    """The agent's heartbeat: what it applied and how that went."""

    generation_applied: int = Field(ge=-1)
    cluster_id: str | None = Field(default=None, max_length=64)
    phase: AgentPhase
    node_phase: NodePhase | None = None  # what `phase` means for the node (NODE_PHASE_OF)
    sections: dict[str, SectionResult] = Field(default_factory=dict, max_length=32)
    inventory: Inventory | None = None  # sent when it changed since the last report
    agent_version: str = Field(default="", max_length=64)


class AgentHealthEvent(_Wire):
    """One passive signal; `key` is the agent's own dedupe key (stable across restarts)."""

    key: str = Field(max_length=200)
    kind: str = Field(max_length=32)
    xid_code: int | None = Field(default=None, ge=0, le=1000)
    gpu_index: int | None = Field(default=None, ge=0, le=63)
    message: str = Field(default="", max_length=2000)
    observed_at: datetime | None = None


class CheckRequest(_Wire):
    """Run the active check `kind` (at DCGM `level`) once, under `run_id`."""

    run_id: str = Field(min_length=1, max_length=255)
    kind: str = Field(max_length=32)
    level: int | None = Field(default=None, ge=1, le=4)


class CheckReport(_Wire):
    """What running one check found: `ok` with the figures the command printed, or not,
    with why (no command for that kind, a timeout, a non-zero exit)."""

    run_id: str = Field(min_length=1, max_length=255)
    ok: bool
    figures: dict[str, Any] = Field(default_factory=dict, max_length=64)
    message: str = Field(default="", max_length=2000)


class StatusAnswer(_Wire):
    """The server's answer to a status report: the checks it asks this host to run."""

    host_id: str
    accepted: bool = True
    checks: list[CheckRequest] = Field(default_factory=list, max_length=32)


class HealthEventBatch(_Wire):
    events: list[AgentHealthEvent] = Field(max_length=100)


class Enrollment(_Wire):
    join_token: str = Field(max_length=256)
    public_key: str = Field(max_length=128)  # base64 of the raw 32-byte Ed25519 key
    inventory: Inventory


# NVML product names -> the fleet's GPU types, most specific first.
_GPU_MODELS: tuple[tuple[str, str], ...] = (
    ("GB200", "GB200_SXM"),
    ("B300", "B300_SXM"),
    ("B200", "B200_SXM"),
    ("H200", "H200_SXM"),
    ("H100", "H100_SXM"),
    ("L40", "L40_PCIE"),
    ("RTX 6000", "RTX_6000_PCI"),
)


def gpu_type_for_model(model: str) -> str | None:
    """The fleet GPU type of an NVML product name ("NVIDIA H100 80GB HBM3"), if known."""
    upper = model.upper()
    for needle, gpu_type in _GPU_MODELS:
        if needle in upper:
            return gpu_type
    return None

"""The dataclass contracts between controllers and drivers.

A driver keeps no state of its own between calls: whatever it needs to remember about a
node, an operation or a volume it returns as `state` (a JSON-able dict), which the
controller persists and hands back on the next call. That makes every driver call safe to
repeat after a crash, and lets the simulated drivers survive server restarts. The state is
opaque: a controller stores it and passes it back, and never reads a key inside it. What a
controller needs to know (done? failed? which phase?) is in the typed progress a verb
returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from clusterplane.domain.enums import NodePhase, NodeRole

DriverState = dict[str, Any]


class BringUpStep(StrEnum):
    """The cluster-level bring-up steps a flavour runs; the controller maps its phases here."""

    NETWORK = "network"
    SHARED_VOLUME = "shared_volume"
    DRIVERS = "drivers"
    ACCEPTANCE_TESTS = "acceptance_tests"
    NCCL_TESTS = "nccl_tests"


class RebootKind(StrEnum):
    REBOOT = "reboot"  # the node's OS restarts; local data on /scratch and /tmp stays
    POWER_CYCLE = "power_cycle"  # the bare-metal host is power-cycled, keeping its identity


@dataclass(frozen=True)
class Progress:
    """Where one operation stands: `done`, or `failed` with the driver's `message`."""

    done: bool
    state: DriverState
    failed: bool = False
    message: str = ""


@dataclass(frozen=True)
class NodeProgress(Progress):
    """A node's preparation: `phase` is what the wire shows; `done` once it runs."""

    phase: NodePhase = NodePhase.PENDING


@dataclass(frozen=True)
class VolumeProgress(Progress):
    """A volume's provisioning: `done` once it exists; `size_tib` what it holds now."""

    size_tib: int = 0


@dataclass(frozen=True)
class CheckProgress(Progress):
    """An active check: once `done`, `figures` holds what it measured (judged by the
    caller); until then `poll_after_seconds` says when to look again."""

    figures: dict[str, Any] = field(default_factory=dict)
    poll_after_seconds: float = 5.0


@dataclass(frozen=True)
class DrainProgress(Progress):
    """A drain: `done` once the nodes run nothing; `drained_by` who drained them."""

    drained_by: str | None = None


@dataclass(frozen=True)
class HostSpec:
    """One host as its driver knows it."""

    host_name: str
    region: str
    gpu_type: str
    num_gpus: int
    driver: str = ""
    host_id: str = ""  # the host's id (a driver that keeps records per host needs it)


@dataclass(frozen=True)
class NodeUser:
    """An account the cluster's people log in as on every node (same uid everywhere)."""

    name: str
    uid: int


@dataclass(frozen=True)
class NodeMount:
    """A directory of one of the cluster's volumes, `source` relative to the storage's
    root (the shared filesystem every host mounts), made visible on the node at `target`."""

    volume_id: str
    source: str
    target: str


@dataclass(frozen=True)
class NodeAccess:
    """What a node gives its cluster's people beyond its identity: the accounts they log
    in as, the SSH user CA keys the node's sshd trusts (`TrustedUserCAKeys`), and the
    cluster's shared volumes, mounted in order (home directories live on the first)."""

    users: tuple[NodeUser, ...] = ()
    ssh_user_ca_keys: tuple[str, ...] = ()
    mounts: tuple[NodeMount, ...] = ()


@dataclass(frozen=True)
class InstanceSpec:
    """A host serving a cluster as one node: what the host driver prepares."""

    instance_id: str
    cluster_id: str
    role: NodeRole
    node_name: str
    host_name: str
    region: str
    gpu_type: str
    num_gpus: int
    image: str
    driver: str = ""  # the host's driver ("" for a node without a host of its own)
    host_id: str = ""  # the host's id ("" likewise)
    cluster_type: str = "KUBERNETES"
    # The cluster's config (startup scripts...) and Slurm shared memory, for the flavour.
    cluster_config: dict[str, Any] = field(default_factory=dict)
    slurm_shm_size_gib: int = 0
    access: NodeAccess = field(default_factory=NodeAccess)
    oidc_config: dict[str, Any] | None = None  # the cluster's, for its own API server


@dataclass(frozen=True)
class ClusterStepSpec:
    """A cluster-level bring-up step and its inputs."""

    cluster_id: str
    cluster_type: str
    step: BringUpStep
    region: str
    num_nodes: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterConfigSpec:
    """What a running cluster should have installed: its enabled add-ons (name, type,
    config) and its cluster_config (load balancer, operators, Slurm scripts...)."""

    cluster_id: str
    cluster_type: str
    region: str
    add_ons: list[dict[str, Any]]
    cluster_config: dict[str, Any]
    slurm_shm_size_gib: int = 0


@dataclass(frozen=True)
class DrainSpec:
    """Nodes of one cluster to drain (or undrain), why, and on whose behalf.

    `reason` starts with `drained_by` so that anyone reading the scheduler's view can tell
    who drained a node; an undrain only touches nodes that `drained_by` drained.
    """

    cluster_id: str
    cluster_type: str
    region: str
    node_names: tuple[str, ...]
    reason: str
    drained_by: str = "clusterplane"


@dataclass(frozen=True)
class CheckSpec:
    """An active check run on one host: `kind` and `level` as in `domain.checks`;
    `purpose` tells a driver why (a return-to-service check follows a hardware repair)."""

    run_id: str
    kind: str
    level: int | None
    purpose: str


@dataclass(frozen=True)
class VolumeSpec:
    volume_id: str
    region: str
    size_tib: int

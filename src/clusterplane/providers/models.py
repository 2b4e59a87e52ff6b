"""The dataclass contracts between controllers and drivers.

A driver keeps no state of its own between calls: whatever it needs to remember about an
instance, an operation or a volume it returns as `state` (a JSON-able dict), which the
controller persists and hands back on the next call. That makes every driver call safe to
repeat after a crash, and lets the simulated driver survive server restarts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterplane.domain.enums import NodePhase, NodeRole

DriverState = dict[str, Any]


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    cluster_id: str
    role: NodeRole
    node_name: str
    host_name: str
    region: str
    gpu_type: str
    num_gpus: int
    image: str


@dataclass(frozen=True)
class InstanceStatus:
    phase: NodePhase
    state: DriverState
    message: str = ""


@dataclass(frozen=True)
class TerminationStatus:
    done: bool
    state: DriverState


@dataclass(frozen=True)
class ClusterStepSpec:
    """A cluster-level bring-up step (`kind` is a cluster phase value) and its inputs."""

    cluster_id: str
    kind: str
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


@dataclass(frozen=True)
class StepStatus:
    done: bool
    state: DriverState
    failed: bool = False
    message: str = ""


@dataclass(frozen=True)
class VolumeSpec:
    volume_id: str
    region: str
    size_tib: int


@dataclass(frozen=True)
class VolumeStatus:
    ready: bool
    state: DriverState
    size_tib: int
    failed: bool = False
    message: str = ""

"""The port between the drivers of agent hosts and the control plane's records.

A driver for hosts run by node agents (`clusterplane agent`) never talks to a host: it
publishes what the host should be and reads what the agent last reported, through
`HostAssignments`, which `services.agents.host_assignments.AssignmentPort` implements over the
database (each call its own short transaction) and `app` hands to the drivers. Providers
never touch the database, so this protocol and its dataclasses are all a driver sees.

    port.publish(host_id, DesiredNode(...)) -> generation    (same content: same generation)
    port.release(host_id) -> generation                      (return the host clean)
    port.observe(host_id) -> Observation | None              (None: no agent on that host)
    port.request_check(host_id, run_id, kind, level) -> CheckRun   (ensure, by run id)
    port.observe_check(host_id, run_id) -> CheckRun | None   (None: never requested)

The host driver publishes the node (identity, users, mounts); a cluster flavour adds its
runtime section ("slurm") to the same assignment with `patch_runtime`, a JSON merge patch
(RFC 7396: objects merge, null deletes a key) applied under the row's lock, so a drain and
a config change of one cluster never overwrite each other. A publish for the same cluster
keeps the flavour's sections and secrets; one for another cluster, or a release, drops them.

    port.patch_runtime(host_id, cluster_id, name, patch, secrets) -> generation | None
    port.peers(cluster_id) -> [Peer]              (hosts serving the cluster, with roles)
    port.cluster_secret(cluster_id, name[, make]) -> str   (a flavour's per-cluster secret)
    port.cluster_ca(cluster_id) -> (cert, key)    (the cluster CA, PEM: for its control plane)
    port.set_api_server(cluster_id, url)          (where the kubeconfig's API server listens)

A verb built on it returns "not yet" until `Observation.converged`, fails with the
sections' messages when `phase == "failed"`, and treats `status == "unknown"` (a silent
agent) as a health signal, never as a reason to terminate or reassign.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from clusterplane.domain.agent_protocol import MountSpec, NodeSpec, SectionResult, UserSpec
from clusterplane.domain.enums import NodePhase


@dataclass(frozen=True)
class DesiredNode:
    """What a host should be for a cluster (everything but the generation)."""

    cluster_id: str
    node: NodeSpec
    users: tuple[UserSpec, ...] = ()
    ssh_user_ca_keys: tuple[str, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    secrets: dict[str, str] = field(default_factory=dict)
    runtimes: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """What the agent last said: heard from (`status` ready/unknown), applied, how it went."""

    host_id: str
    status: str
    last_seen_at: datetime
    generation_published: int
    generation_applied: int
    cluster_id: str | None
    phase: str
    node_phase: NodePhase | None  # what actually happened on the node, as the agent saw it
    sections: dict[str, SectionResult]
    address: str = ""  # where the host is reached (its inventory's ip_address)
    inventory: dict[str, Any] = field(default_factory=dict)  # agent_protocol.Inventory

    @property
    def converged(self) -> bool:
        return self.generation_applied >= self.generation_published and self.phase in (
            "ready",
            "idle",
        )

    @property
    def failures(self) -> dict[str, str]:
        return {name: r.message for name, r in self.sections.items() if not r.ok}


@dataclass(frozen=True)
class Peer:
    """A host whose assignment serves a cluster: its node's name and role, its address."""

    host_id: str
    node_name: str
    role: str
    address: str
    gpu_devices: tuple[str, ...] = ()  # the device files of its GPUs, from its inventory
    num_cpu_cores: int = 0
    memory_gib: float = 0.0


@dataclass(frozen=True)
class CheckRun:
    """An active check a host's agent was asked to run, and what it reported: `state` is
    "requested" until then, "done" (the `figures` it measured) or "failed" (`message`)."""

    run_id: str
    kind: str
    level: int | None
    state: str
    requested_at: datetime
    figures: dict[str, Any] = field(default_factory=dict)
    message: str = ""


class HostAssignments(Protocol):
    def publish(self, host_id: str, desired: DesiredNode) -> int: ...

    def release(self, host_id: str) -> int: ...

    def observe(self, host_id: str) -> Observation | None: ...

    def patch_runtime(
        self,
        host_id: str,
        cluster_id: str,
        name: str,
        patch: dict[str, Any] | None,
        secrets: dict[str, str] | None = None,
    ) -> int | None:
        """Merge `patch` into runtime section `name` (None removes the section: its agent
        tears the runtime down) and `secrets` into the host's secrets; the generation, or
        None when the host does not serve `cluster_id` (nothing changed)."""
        ...

    def peers(self, cluster_id: str) -> list[Peer]: ...

    def cluster_secret(
        self, cluster_id: str, name: str, make: Callable[[], str] | None = None
    ) -> str:
        """The cluster's secret `name`, made on first use (`make()`, or random bytes in
        base64) and kept sealed."""
        ...

    def cluster_ca(self, cluster_id: str) -> tuple[str, str]:
        """The cluster CA's certificate and private key (PEM)."""
        ...

    def set_api_server(self, cluster_id: str, server_url: str) -> None:
        """Point the kubeconfig clusterplane hands out at `server_url`."""
        ...

    def request_check(self, host_id: str, run_id: str, kind: str, level: int | None) -> CheckRun:
        """Ask the host's agent to run a check (a repeat with the same run id answers the
        run already asked for); `TemporaryProviderError` while the host has too many."""
        ...

    def observe_check(self, host_id: str, run_id: str) -> CheckRun | None: ...

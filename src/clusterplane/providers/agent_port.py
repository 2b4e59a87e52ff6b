"""The port between a host driver for agent hosts and the control plane's records.

A driver for hosts run by node agents (`clusterplane agent`) never talks to a host: it
publishes what the host should be and reads what the agent last reported, through
`HostAssignments`, which `services.host_assignments.AssignmentPort` implements over the
database (each call its own short transaction) and `app` hands to the driver. Providers
never touch the database, so this protocol and its dataclasses are all a driver sees.

    port.publish(host_id, DesiredNode(...)) -> generation    (same content: same generation)
    port.release(host_id) -> generation                      (return the host clean)
    port.observe(host_id) -> Observation | None              (None: no agent on that host)
    port.request_check(host_id, run_id, kind, level) -> CheckRun   (ensure, by run id)
    port.observe_check(host_id, run_id) -> CheckRun | None   (None: never requested)

A verb built on it returns "not yet" until `Observation.converged`, fails with the
sections' messages when `phase == "failed"`, and treats `status == "unknown"` (a silent
agent) as a health signal, never as a reason to terminate or reassign.
"""

from __future__ import annotations

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

    def request_check(self, host_id: str, run_id: str, kind: str, level: int | None) -> CheckRun:
        """Ask the host's agent to run a check (a repeat with the same run id answers the
        run already asked for); `TemporaryProviderError` while the host has too many."""
        ...

    def observe_check(self, host_id: str, run_id: str) -> CheckRun | None: ...

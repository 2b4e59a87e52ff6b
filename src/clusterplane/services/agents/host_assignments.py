"""A host's desired state for its node agent, and what the agent reported: the port.

The control plane never pushes to an agent and never waits on one. It publishes a
generation-numbered `Assignment` per host; the agent long-polls it, converges, and reports
(`services.agents.agent_hosts.record_status`). The functions take a session:

    publish(session, box, host_id, desired, now=...) -> int        the new (or same) generation
    release(session, box, host_id, now=...) -> int                 "return the host clean"
    observe(session, host_id) -> Observation | None                what the agent last said
    current(session, box, host_id) -> Assignment                   what the agent is served

    patch_runtime(session, box, host_id, cluster_id, name, patch, secrets, now=...)
    peers(session, cluster_id) -> [Peer]                           hosts serving a cluster

and `AssignmentPort` offers them to the agent hosts' drivers as
`providers.agent_port.HostAssignments` (one short transaction per call; a change wakes
the host's waiting long-poll in this process), with the host's active checks
(`request_check`, `observe_check`: `services.agents.agent_checks`).

`publish` bumps the generation only when the content changed, so calling it on every
reconcile pass is free and idempotent; for the cluster the host already serves it keeps
the runtime sections and secrets a flavour patched in. Secrets travel inside the
assignment only, and are sealed at rest with the server's `SecretBox`; releasing a host
drops them from its record.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.clock import Clock
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import AgentHostRow, ClusterRow, HostAssignmentRow
from clusterplane.domain.agent_protocol import NODE_PHASE_OF, Assignment, SectionResult
from clusterplane.domain.merge_patch import merge_patch
from clusterplane.errors import NotFound
from clusterplane.providers.agent_port import CheckRun, DesiredNode, Observation, Peer
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.agents import agent_checks
from clusterplane.services.clusters import cluster_secrets


def _context(host_id: str) -> str:
    return f"host-assignment:{host_id}"


def _content(desired: DesiredNode | None) -> tuple[dict[str, Any], dict[str, str]]:
    """(spec without secrets, secrets) of a desired state; None is the empty assignment."""
    if desired is None:
        return Assignment(generation=0).model_dump(mode="json", exclude={"generation"}), {}
    doc = Assignment(
        generation=0,
        cluster_id=desired.cluster_id,
        node=desired.node,
        users=list(desired.users),
        ssh_user_ca_keys=list(desired.ssh_user_ca_keys),
        mounts=list(desired.mounts),
        runtimes=desired.runtimes,
    ).model_dump(mode="json", exclude={"generation", "secrets"})
    return doc, dict(desired.secrets)


def _require_agent(session: Session, host_id: str) -> None:
    if session.get(AgentHostRow, host_id) is None:
        raise NotFound(f"no agent host '{host_id}'", param="host")


def _locked(session: Session, host_id: str) -> HostAssignmentRow | None:
    return session.scalar(
        select(HostAssignmentRow).where(HostAssignmentRow.host_id == host_id).with_for_update()
    )


def publish(
    session: Session, box: SecretBox, host_id: str, desired: DesiredNode | None, *, now: datetime
) -> int:
    """Make `desired` the host's assignment; the generation moves only on change."""
    _require_agent(session, host_id)
    spec, secrets = _content(desired)
    row = _locked(session, host_id)
    if row is not None and desired is not None and row.cluster_id == desired.cluster_id:
        spec["runtimes"] = {**row.spec.get("runtimes", {}), **spec["runtimes"]}
        secrets = {**_open(box, row), **secrets}
    return _write(session, box, host_id, row, spec, secrets, now)


def _write(
    session: Session,
    box: SecretBox,
    host_id: str,
    row: HostAssignmentRow | None,
    spec: dict[str, Any],
    secrets: dict[str, str],
    now: datetime,
) -> int:
    if row is not None and row.spec == spec and _open(box, row) == secrets:
        return row.generation
    sealed = box.seal(orjson.dumps(secrets).decode(), context=_context(host_id)) if secrets else ""
    if row is None:
        row = HostAssignmentRow(host_id=host_id, generation=0)
        session.add(row)
    row.generation += 1
    row.cluster_id = spec.get("cluster_id")
    row.spec = spec
    row.sealed_secrets = sealed
    row.updated_at = now
    session.flush()
    return row.generation


def patch_runtime(
    session: Session,
    box: SecretBox,
    host_id: str,
    cluster_id: str,
    name: str,
    patch: dict[str, Any] | None,
    secrets: dict[str, str] | None = None,
    *,
    now: datetime,
) -> int | None:
    """Merge `patch` into the host's runtime section `name` while it serves `cluster_id`
    (a None patch removes the section)."""
    row = _locked(session, host_id)
    if row is None or row.cluster_id != cluster_id:
        return None
    runtimes = dict(row.spec.get("runtimes", {}))
    merged = merge_patch(runtimes.get(name, {}), patch)
    if merged is None:
        runtimes.pop(name, None)
    else:
        runtimes[name] = merged
    spec = {**row.spec, "runtimes": runtimes}
    Assignment.model_validate({**spec, "generation": 0})  # what agents are served stays valid
    merged = {**_open(box, row), **(secrets or {})}
    return _write(session, box, host_id, row, spec, merged, now)


def peers(session: Session, cluster_id: str) -> list[Peer]:
    """The hosts whose assignment serves `cluster_id`, by node name."""
    rows = session.execute(
        select(HostAssignmentRow.host_id, HostAssignmentRow.spec, AgentHostRow.inventory)
        .join(AgentHostRow, AgentHostRow.host_id == HostAssignmentRow.host_id)
        .where(HostAssignmentRow.cluster_id == cluster_id)
    )
    found = [
        _peer(host_id, spec.get("node") or {}, inventory or {}) for host_id, spec, inventory in rows
    ]
    return sorted(found, key=lambda peer: peer.node_name)


def _peer(host_id: str, node: dict[str, Any], inventory: dict[str, Any]) -> Peer:
    gpus = inventory.get("gpus") or []
    return Peer(
        host_id=host_id,
        node_name=str(node.get("node_name", "")),
        role=str(node.get("role", "")),
        address=str(inventory.get("ip_address", "")),
        gpu_devices=tuple(str(g["device_path"]) for g in gpus if g.get("device_path")),
        num_cpu_cores=int(inventory.get("num_cpu_cores") or 0),
        memory_gib=float(inventory.get("memory_gib") or 0.0),
    )


def release(session: Session, box: SecretBox, host_id: str, *, now: datetime) -> int:
    """Tell the host's agent to return it clean (no user, mount, secret or daemon left)."""
    return publish(session, box, host_id, None, now=now)


def _open(box: SecretBox, row: HostAssignmentRow) -> dict[str, str]:
    if not row.sealed_secrets:
        return {}
    opened: dict[str, str] = orjson.loads(
        box.open(row.sealed_secrets, context=_context(row.host_id))
    )
    return opened


def generation(session: Session, host_id: str) -> int:
    value = session.scalar(
        select(HostAssignmentRow.generation).where(HostAssignmentRow.host_id == host_id)
    )
    return value or 0


def generations(session: Session, host_ids: list[str]) -> dict[str, int]:
    """The published generation of each of `host_ids` that has one."""
    found: dict[str, int] = {}
    for start in range(0, len(host_ids), 500):
        chunk = host_ids[start : start + 500]
        rows = session.execute(
            select(HostAssignmentRow.host_id, HostAssignmentRow.generation).where(
                HostAssignmentRow.host_id.in_(chunk)
            )
        )
        found.update({host_id: generation for host_id, generation in rows})
    return found


def current(session: Session, box: SecretBox, host_id: str) -> Assignment:
    """The host's assignment as its agent is served it (generation 0: never assigned)."""
    row = session.get(HostAssignmentRow, host_id)
    if row is None:
        return Assignment(generation=0)
    return Assignment.model_validate(
        {**row.spec, "generation": row.generation, "secrets": _open(box, row)}
    )


def observe(session: Session, host_id: str) -> Observation | None:
    agent = session.get(AgentHostRow, host_id)
    if agent is None:
        return None
    report = agent.report or {}
    sections = {
        name: SectionResult.model_validate(value)
        for name, value in (report.get("sections") or {}).items()
    }
    return Observation(
        host_id=host_id,
        status=agent.status,
        last_seen_at=agent.last_seen_at,
        generation_published=generation(session, host_id),
        generation_applied=agent.generation_applied,
        cluster_id=report.get("cluster_id"),
        phase=agent.phase,
        node_phase=NODE_PHASE_OF.get(agent.phase),
        sections=sections,
        address=str((agent.inventory or {}).get("ip_address", "")),
        inventory=dict(agent.inventory or {}),
    )


class AssignmentPort:
    """`providers.agent_port.HostAssignments` over the database, for a host driver."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        clock: Clock,
        *,
        announce: Callable[[str], None] = lambda host_id: None,
    ):
        self._sessions = sessions
        self._box = box
        self._clock = clock
        self.announce = announce

    def publish(self, host_id: str, desired: DesiredNode | None) -> int:
        with transaction(self._sessions) as session:
            generation = publish(session, self._box, host_id, desired, now=self._clock.now())
        self.announce(host_id)
        return generation

    def release(self, host_id: str) -> int:
        return self.publish(host_id, None)

    def observe(self, host_id: str) -> Observation | None:
        with read_transaction(self._sessions) as session:
            return observe(session, host_id)

    def patch_runtime(
        self,
        host_id: str,
        cluster_id: str,
        name: str,
        patch: dict[str, Any] | None,
        secrets: dict[str, str] | None = None,
    ) -> int | None:
        with transaction(self._sessions) as session:
            before = generation(session, host_id)
            after = patch_runtime(
                session, self._box, host_id, cluster_id, name, patch, secrets, now=self._clock.now()
            )
        if after is not None and after != before:
            self.announce(host_id)
        return after

    def peers(self, cluster_id: str) -> list[Peer]:
        with read_transaction(self._sessions) as session:
            return peers(session, cluster_id)

    def cluster_secret(
        self, cluster_id: str, name: str, make: Callable[[], str] | None = None
    ) -> str:
        with transaction(self._sessions) as session:
            cluster = session.scalar(
                select(ClusterRow).where(ClusterRow.id == cluster_id).with_for_update()
            )
            if cluster is None:
                raise NotFound(f"no cluster '{cluster_id}'", param="cluster_id")
            return cluster_secrets.flavour_secret(cluster, name, self._box, make=make)

    def cluster_ca(self, cluster_id: str) -> tuple[str, str]:
        with read_transaction(self._sessions) as session:
            return cluster_secrets.cluster_ca(self._cluster(session, cluster_id), self._box)

    def set_api_server(self, cluster_id: str, server_url: str) -> None:
        with transaction(self._sessions) as session:
            cluster = self._cluster(session, cluster_id, lock=True)
            cluster_secrets.point_kubeconfig(cluster, self._box, server_url)

    @staticmethod
    def _cluster(session: Session, cluster_id: str, *, lock: bool = False) -> ClusterRow:
        query = select(ClusterRow).where(ClusterRow.id == cluster_id)
        cluster = session.scalar(query.with_for_update() if lock else query)
        if cluster is None:
            raise NotFound(f"no cluster '{cluster_id}'", param="cluster_id")
        return cluster

    def request_check(self, host_id: str, run_id: str, kind: str, level: int | None) -> CheckRun:
        with transaction(self._sessions) as session:
            return agent_checks.request_check(
                session, host_id, run_id, kind, level, now=self._clock.now()
            )

    def observe_check(self, host_id: str, run_id: str) -> CheckRun | None:
        with read_transaction(self._sessions) as session:
            return agent_checks.find_check(session, host_id, run_id)

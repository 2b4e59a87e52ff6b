"""A host's desired state for its node agent, and what the agent reported: the port.

The control plane never pushes to an agent and never waits on one. It publishes a
generation-numbered `Assignment` per host; the agent long-polls it, converges, and reports
(`services.agent_hosts.record_status`). The functions take a session:

    publish(session, box, host_id, desired, now=...) -> int        the new (or same) generation
    release(session, box, host_id, now=...) -> int                 "return the host clean"
    observe(session, host_id) -> Observation | None                what the agent last said
    current(session, box, host_id) -> Assignment                   what the agent is served

and `AssignmentPort` offers publish, release and observe to a host driver as
`providers.agent_port.HostAssignments` (one short transaction per call; a publish wakes
the host's waiting long-poll in this process), with the host's active checks
(`request_check`, `observe_check`: `services.agent_checks`).

`publish` bumps the generation only when the content changed, so calling it on every
reconcile pass is free and idempotent. Secrets travel inside the assignment only, and are
sealed at rest with the server's `SecretBox`; releasing a host drops them from its record.
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
from clusterplane.db.rows import AgentHostRow, HostAssignmentRow
from clusterplane.domain.agent_protocol import NODE_PHASE_OF, Assignment, SectionResult
from clusterplane.errors import NotFound
from clusterplane.providers.agent_port import CheckRun, DesiredNode, Observation
from clusterplane.services import agent_checks
from clusterplane.services.sealing import SecretBox


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


def publish(
    session: Session, box: SecretBox, host_id: str, desired: DesiredNode | None, *, now: datetime
) -> int:
    """Make `desired` the host's assignment; the generation moves only on change."""
    _require_agent(session, host_id)
    spec, secrets = _content(desired)
    row = session.scalar(
        select(HostAssignmentRow).where(HostAssignmentRow.host_id == host_id).with_for_update()
    )
    if row is not None and row.spec == spec and _open(box, row) == secrets:
        return row.generation
    sealed = box.seal(orjson.dumps(secrets).decode(), context=_context(host_id)) if secrets else ""
    if row is None:
        row = HostAssignmentRow(host_id=host_id, generation=0)
        session.add(row)
    row.generation += 1
    row.cluster_id = desired.cluster_id if desired else None
    row.spec = spec
    row.sealed_secrets = sealed
    row.updated_at = now
    session.flush()
    return row.generation


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

    def request_check(self, host_id: str, run_id: str, kind: str, level: int | None) -> CheckRun:
        with transaction(self._sessions) as session:
            return agent_checks.request_check(
                session, host_id, run_id, kind, level, now=self._clock.now()
            )

    def observe_check(self, host_id: str, run_id: str) -> CheckRun | None:
        with read_transaction(self._sessions) as session:
            return agent_checks.find_check(session, host_id, run_id)

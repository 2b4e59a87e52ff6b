"""Hosts run by node agents: enrollment, status reports, and silence.

* `enroll`: a join token plus the agent's public key and inventory create the host record
  (region and topology from the token, facts from the inventory), bind the key to it and
  use the token up, all in one transaction: a refused enrollment writes nothing. The same
  agent (same key) may enroll again with its token (a retry after a crash); nobody else.
* `record_status`: the agent's heartbeat and what it applied (`StatusReport`).
* `find_silent` / `mark_unknown`: an agent not heard from for the grace period makes its
  host Unknown. That is a recorded health signal (`domain.health.SILENT_AGENT`, which asks
  for nothing) and, for an idle host, leaving placement (fail closed); never a repair,
  termination or reassignment. `mark_heard` undoes it when the agent is back.

Agent times (`wall`) are wall time; health events and audit rows use fleet time (`now`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import AgentHostRow, HealthEventRow, HostRow, JoinTokenRow
from clusterplane.domain import health
from clusterplane.domain.agent_protocol import Enrollment, Inventory, StatusReport
from clusterplane.domain.enums import HostState
from clusterplane.errors import Conflict, InvalidRequest, PermissionDenied
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.agents import join_tokens
from clusterplane.services.agents.agent_auth import load_public_key
from clusterplane.services.capacity import placement_cache
from clusterplane.services.capacity.fleet import host_id_for
from clusterplane.services.events.events import FLEET, record_event

READY = "ready"
UNKNOWN = "unknown"
AGENT = "agent"
SIMULATED = "simulated"
DEFAULT_LABEL = "default"


def _host_facts(inventory: Inventory) -> dict[str, Any]:
    if inventory.gpus and inventory.gpu_type is None:
        model = inventory.gpus[0].model
        raise InvalidRequest(
            f"cannot tell the fleet GPU type of '{model}': set gpu_type in the agent config",
            param="inventory.gpu_type",
        )
    return {
        "gpu_type": inventory.gpu_type or "none",
        "num_gpus": len(inventory.gpus),
        "num_cpu_cores": inventory.num_cpu_cores,
        "memory_gib": inventory.memory_gib,
        "ib_hca_count": len(inventory.ib_hcas),
        "ib_hca_type": inventory.ib_hca_type,
        "ip_address": inventory.ip_address,
    }


def enroll(session: Session, request: Enrollment, *, wall: datetime, now: datetime) -> HostRow:
    """Create (or, for the same agent retrying, return) the host of an enrollment."""
    load_public_key(request.public_key)
    inventory = request.inventory
    host_id = host_id_for(inventory.hostname)
    token = join_tokens.consume(session, request.join_token, host_id=host_id, now=wall)
    existing = session.get(AgentHostRow, host_id)
    if existing is not None:
        if existing.public_key != request.public_key:
            raise PermissionDenied("this host is enrolled with another key")
        host = session.get(HostRow, host_id)
        assert host is not None
        return host
    if session.scalar(select(HostRow.id).where(HostRow.name == inventory.hostname)):
        raise Conflict(f"a host named '{inventory.hostname}' is already in the fleet")
    if session.scalar(
        select(AgentHostRow.host_id).where(AgentHostRow.public_key == request.public_key)
    ):
        raise Conflict("this key is already bound to another host")
    host = _new_host(host_id, inventory, token, now)
    session.add(host)
    session.flush()
    session.add(
        AgentHostRow(
            host_id=host_id,
            public_key=request.public_key,
            join_token_id=token.id,
            enrolled_at=wall,
            inventory=inventory.model_dump(mode="json"),
            status=READY,
            last_seen_at=wall,
            generation_applied=-1,
            phase="idle",
            report=None,
            held_out=False,
        )
    )
    record_event(
        session,
        object_type="host",
        object_id=host_id,
        kind="enrolled",
        message=f"agent enrolled with join token {token.id} in {token.region}",
        at=now,
        scope=FLEET,
    )
    placement_cache.invalidate(session, (host.region, host.gpu_type))
    return host


def _new_host(host_id: str, inventory: Inventory, token: JoinTokenRow, now: datetime) -> HostRow:
    """The fleet's record of an enrolling host: where from the token, what from the agent."""
    labels = inventory.labels
    return HostRow(
        id=host_id,
        name=inventory.hostname,
        region=token.region,
        fabric=token.fabric or labels.get("fabric", DEFAULT_LABEL),
        block=token.block or labels.get("block", DEFAULT_LABEL),
        rack=token.rack or labels.get("rack", DEFAULT_LABEL),
        nvswitch_count=0,
        nvswitch_type="",
        ephemeral_storage="0",
        state=HostState.AVAILABLE,
        driver=AGENT,
        in_fleet_file=True,
        draining=False,
        updated_at=now,
        **_host_facts(inventory),
    )


def record_status(
    session: Session, agent: AgentHostRow, report: StatusReport, *, now: datetime
) -> None:
    """Keep what the agent applied; new inventory updates an idle host's facts."""
    agent.generation_applied = report.generation_applied
    agent.phase = report.phase
    agent.report = report.model_dump(mode="json", exclude={"inventory"})
    if report.inventory is None or report.inventory.model_dump(mode="json") == agent.inventory:
        return
    agent.inventory = report.inventory.model_dump(mode="json")
    record_event(
        session,
        object_type="host",
        object_id=agent.host_id,
        kind="inventory_changed",
        message="the agent reported a changed inventory",
        at=now,
        scope=FLEET,
    )
    host = session.get(HostRow, agent.host_id)
    if host is not None and host.cluster_id is None:
        for name, value in _host_facts(report.inventory).items():
            setattr(host, name, value)
        host.updated_at = now
        placement_cache.invalidate(session, (host.region, host.gpu_type))


def find_silent(session: Session, *, grace_seconds: float, wall: datetime, limit: int) -> list[str]:
    """Hosts whose agent is Ready but silent for longer than the grace period."""
    cutoff = wall - timedelta(seconds=grace_seconds)
    return list(
        session.scalars(
            select(AgentHostRow.host_id)
            .where(AgentHostRow.status == READY, AgentHostRow.last_seen_at < cutoff)
            .order_by(AgentHostRow.last_seen_at)
            .limit(limit)
        )
    )


def mark_unknown(
    session: Session, host_id: str, *, grace_seconds: float, wall: datetime, now: datetime
) -> bool:
    """Record a silent agent's host as Unknown (idempotent; False if it spoke meanwhile)."""
    agent = session.scalar(
        select(AgentHostRow).where(AgentHostRow.host_id == host_id).with_for_update()
    )
    cutoff = wall - timedelta(seconds=grace_seconds)
    if agent is None or agent.status != READY or agent.last_seen_at >= cutoff:
        return False
    host = session.get(HostRow, host_id)
    assert host is not None
    agent.status = UNKNOWN
    session.add(_silence_event(host, agent, now))
    if host.cluster_id is None and host.state == HostState.AVAILABLE:
        host.state = HostState.OFFLINE  # fail closed: an unknown host is not handed out
        host.updated_at = now
        agent.held_out = True
        placement_cache.invalidate(session, (host.region, host.gpu_type))
    record_event(
        session,
        object_type="host",
        object_id=host_id,
        kind="agent_unknown",
        message=f"agent silent since {agent.last_seen_at.isoformat()}",
        at=now,
        scope=FLEET,
    )
    return True


def _silence_event(host: HostRow, agent: AgentHostRow, now: datetime) -> HealthEventRow:
    verdict = health.SILENT_AGENT
    return HealthEventRow(
        id=new_uuid(),
        host_id=host.id,
        host_name=host.name,
        cluster_id=host.cluster_id,
        node_row_id=host.node_row_id,
        instance_id=None,
        kind=health.EventKind.HEARTBEAT_LOSS,
        code=None,
        gpu_index=None,
        alert_name=verdict.alert_name,
        severity=verdict.severity,
        action=verdict.action,
        title=verdict.title,
        message=f"no word from the node agent since {agent.last_seen_at.isoformat()}",
        source="agent-silence",
        observed_at=now,
        ingested_at=now,
        held_reason=health.SILENCE_HOLD,
    )


def mark_heard(session: Session, agent: AgentHostRow, *, now: datetime) -> None:
    """An Unknown host's agent spoke: Ready again, its silence signal resolved."""
    if agent.status != UNKNOWN:
        return
    agent.status = READY
    open_silence = session.scalars(
        select(HealthEventRow).where(
            HealthEventRow.host_id == agent.host_id,
            HealthEventRow.source.in_(("agent-silence", "flavour")),
            HealthEventRow.resolved_at.is_(None),
        )
    )
    for event in open_silence:
        event.resolved_at = now
    host = session.get(HostRow, agent.host_id)
    if host is not None and agent.held_out:
        agent.held_out = False
        if host.state == HostState.OFFLINE and host.cluster_id is None:
            host.state = HostState.AVAILABLE
            host.updated_at = now
            placement_cache.invalidate(session, (host.region, host.gpu_type))
    record_event(
        session,
        object_type="host",
        object_id=agent.host_id,
        kind="agent_ready",
        message="the node agent is heard from again",
        at=now,
        scope=FLEET,
    )


def agent_view(agent: AgentHostRow, host: HostRow) -> dict[str, Any]:
    return {
        "host_id": agent.host_id,
        "host_name": host.name,
        "region": host.region,
        "status": agent.status,
        "phase": agent.phase,
        "generation_applied": agent.generation_applied,
        "last_seen_at": agent.last_seen_at,
        "enrolled_at": agent.enrolled_at,
        "inventory": agent.inventory,
        "report": agent.report,
    }

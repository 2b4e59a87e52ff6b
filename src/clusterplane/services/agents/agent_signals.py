"""A node is lost when two signals agree: the host's agent, and its cluster's scheduler.

What it owns:
    * `confirm_silent_nodes`, run by the agent silence scan: for each host whose agent is
      Unknown and which serves a GPU worker, it looks at what the cluster's flavour
      runtimes report about their nodes (`node_conditions` in a runtime section's details:
      Slurm's "not responding" or "down", Kubernetes' Ready condition and Lease) as the
      cluster's other agents last reported it.
    * `judge_daemons`, run on each status report of a live agent: a runtime section whose
      `daemon_health` says the node's daemon stopped answering (a hung kubelet) is the
      host's own signal; the scheduler's view of the node is the second.
    When the scheduler says the node is not ready, a `scheduler_node_down` signal is
    ingested for the host, which excludes the node and proposes its replacement like any
    health signal.

Invariants:
    * One signal alone never produces this one: a silent agent or a failing daemon whose
      node the scheduler still runs, or a cluster with no scheduler view (no report), is
      left alone; so is a scheduler's NotReady that the node's live agent does not confirm
      (the link between them, not the node, may be what failed).
    * One open signal per host: it is resolved when the agent is heard again
      (`agent_hosts.mark_heard`), or reports its daemons healthy again (`judge_daemons`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import AgentHostRow, HealthEventRow, HostAssignmentRow, HostRow, NodeRow
from clusterplane.domain.enums import NodeRole
from clusterplane.domain.health import EventKind
from clusterplane.services.health import health
from clusterplane.settings import Settings

SOURCE = "flavour"
UNKNOWN = "unknown"
DAEMON_HEALTH = "daemon_health"


def confirm_silent_nodes(session: Session, settings: Settings, *, now: datetime, limit: int) -> int:
    """Ingest a signal for each silent agent's node its scheduler lost; how many."""
    rows = session.execute(
        _serving_workers()
        .join(AgentHostRow, AgentHostRow.host_id == HostRow.id)
        .where(AgentHostRow.status == UNKNOWN)
        .limit(limit)
    ).all()
    return sum(
        _confirm(session, settings, host, node, "agent silent and", now) for host, node in rows
    )


def judge_daemons(
    session: Session,
    settings: Settings,
    agent: AgentHostRow,
    previous: dict[str, Any] | None,
    *,
    now: datetime,
) -> bool:
    """Weigh a live agent's report of its node daemons; True if a signal was ingested."""
    failing = _failing_daemons(agent.report)
    if not failing:
        if _failing_daemons(previous):
            for event in session.scalars(_open_signals(agent.host_id)):
                event.resolved_at = now
        return False
    found = session.execute(_serving_workers().where(HostRow.id == agent.host_id)).first()
    if found is None:
        return False
    host, node = found
    return _confirm(session, settings, host, node, f"{failing[0]}, and", now)


def _serving_workers() -> Select[HostRow, NodeRow]:
    """Hosts with the live GPU worker they serve."""
    return (
        select(HostRow, NodeRow)
        .join(NodeRow, NodeRow.id == HostRow.node_row_id)
        .where(
            NodeRow.role == NodeRole.GPU_WORKER,
            NodeRow.deleted_at.is_(None),
            NodeRow.marked_for_deletion.is_(False),
        )
    )


def _confirm(
    session: Session, settings: Settings, host: HostRow, node: NodeRow, why: str, now: datetime
) -> bool:
    """Ingest the signal when the scheduler lost `node` too and none is open; True if so."""
    if session.scalar(_open_signals(host.id).with_only_columns(HealthEventRow.id)) is not None:
        return False
    reason = _scheduler_view(session, node.cluster_id).get(node.node_name)
    if reason is None:
        return False
    message = f"{why} the scheduler says {node.node_name} is {reason}"
    signal = health.Signal(kind=EventKind.SCHEDULER_NODE_DOWN, message=message, source=SOURCE)
    health.ingest_event(session, settings, host, signal, now)
    return True


def _failing_daemons(report: dict[str, Any] | None) -> list[str]:
    """What the report's runtime sections say of daemons that stopped answering."""
    failing = []
    for section in ((report or {}).get("sections") or {}).values():
        daemon: Any = ((section or {}).get("details") or {}).get(DAEMON_HEALTH)
        if isinstance(daemon, dict) and daemon.get("ok") is False:
            failing.append(str(daemon.get("message") or f"{daemon.get('name')} failing")[:200])
    return failing


def _open_signals(host_id: str) -> Select[HealthEventRow]:
    return select(HealthEventRow).where(
        HealthEventRow.host_id == host_id,
        HealthEventRow.kind == EventKind.SCHEDULER_NODE_DOWN,
        HealthEventRow.resolved_at.is_(None),
    )


def _scheduler_view(session: Session, cluster_id: str) -> dict[str, str]:
    """Node name -> why the cluster's scheduler holds it not ready, from agents' reports."""
    reports = session.scalars(
        select(AgentHostRow.report)
        .join(HostAssignmentRow, HostAssignmentRow.host_id == AgentHostRow.host_id)
        .where(HostAssignmentRow.cluster_id == cluster_id, AgentHostRow.status != UNKNOWN)
    )
    down: dict[str, str] = {}
    for report in reports:
        for section in ((report or {}).get("sections") or {}).values():
            conditions: Any = ((section or {}).get("details") or {}).get("node_conditions")
            if not isinstance(conditions, dict):
                continue
            for name, condition in conditions.items():
                if isinstance(condition, dict) and condition.get("ready") is False:
                    down[str(name)] = str(condition.get("reason") or "not ready")[:200]
    return down

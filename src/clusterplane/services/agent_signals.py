"""The second signal a silent agent needs: its cluster's scheduler lost the node too.

What it owns:
    `confirm_silent_nodes`, run by the agent silence scan: for each host whose agent is
    Unknown and which serves a GPU worker, it looks at what the cluster's flavour runtimes
    report about their nodes (`node_conditions` in a runtime section's details: Slurm's
    "not responding" or "down", Kubernetes' Ready condition) as the cluster's other agents
    last reported it. When the scheduler says the node is not ready, a
    `scheduler_node_down` signal is ingested for the host, which excludes the node and
    proposes its replacement like any health signal.

Invariants:
    * Silence alone never produces this signal: a node the scheduler still runs, or a
      cluster with no scheduler view (no report), is left alone.
    * One open signal per host: it is resolved when the agent is heard again
      (`agent_hosts.mark_heard`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import AgentHostRow, HealthEventRow, HostAssignmentRow, HostRow, NodeRow
from clusterplane.domain.enums import NodeRole
from clusterplane.domain.health import EventKind
from clusterplane.services import health
from clusterplane.settings import Settings

SOURCE = "flavour"
UNKNOWN = "unknown"


def confirm_silent_nodes(session: Session, settings: Settings, *, now: datetime, limit: int) -> int:
    """Ingest a signal for each silent agent's node its scheduler lost; how many."""
    rows = session.execute(
        select(HostRow, NodeRow)
        .join(AgentHostRow, AgentHostRow.host_id == HostRow.id)
        .join(NodeRow, NodeRow.id == HostRow.node_row_id)
        .where(
            AgentHostRow.status == UNKNOWN,
            NodeRow.role == NodeRole.GPU_WORKER,
            NodeRow.deleted_at.is_(None),
            NodeRow.marked_for_deletion.is_(False),
        )
        .limit(limit)
    ).all()
    confirmed = 0
    for host, node in rows:
        if _has_open_signal(session, host.id):
            continue
        reason = _scheduler_view(session, node.cluster_id).get(node.node_name)
        if reason is None:
            continue
        message = f"agent silent and the scheduler says {node.node_name} is {reason}"
        signal = health.Signal(kind=EventKind.SCHEDULER_NODE_DOWN, message=message, source=SOURCE)
        health.ingest_event(session, settings, host, signal, now)
        confirmed += 1
    return confirmed


def _has_open_signal(session: Session, host_id: str) -> bool:
    return (
        session.scalar(
            select(HealthEventRow.id).where(
                HealthEventRow.host_id == host_id,
                HealthEventRow.kind == EventKind.SCHEDULER_NODE_DOWN,
                HealthEventRow.resolved_at.is_(None),
            )
        )
        is not None
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

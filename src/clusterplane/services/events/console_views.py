"""Reads the web console needs beyond the wire API: the remediations inbox, a cluster's
audit trail for its timeline, and the fleet's hosts with their health (admin keys).

Called by `api/routers/console.py`. The inbox and the timeline are scoped like the wire
API: the inbox to the key's project (the clusters its list shows), a timeline to a
cluster the caller can see (else 404). Each read is bounded: the newest `limit` rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import (
    ClusterRow,
    EventRow,
    HealthEventRow,
    HostRow,
    NodeRow,
    RemediationRow,
)
from clusterplane.domain.enums import RemediationState
from clusterplane.domain.remediation import TERMINAL
from clusterplane.services.access.auth import Caller
from clusterplane.services.capacity import fleet_state
from clusterplane.services.clusters.clusters import get_cluster

INBOX_LIMIT = 200
TIMELINE_EVENTS = 500


def inbox(
    session: Session, caller: Caller, *, limit: int = INBOX_LIMIT
) -> list[tuple[RemediationRow, str]]:
    """Remediations of the project's live clusters with their cluster's name: those
    waiting for approval first, then the other open ones, then the ended; newest first."""
    rank = case(
        (RemediationRow.state == RemediationState.PENDING_APPROVAL, 0),
        (RemediationRow.state.in_(sorted(TERMINAL)), 2),
        else_=1,
    )
    rows = session.execute(
        select(RemediationRow, ClusterRow.name)
        .join(ClusterRow, ClusterRow.id == RemediationRow.cluster_id)
        .where(ClusterRow.project_id == caller.project_id, ClusterRow.deleted_at.is_(None))
        .order_by(rank, RemediationRow.create_time.desc(), RemediationRow.id)
        .limit(limit)
    ).all()
    return [(row, name) for row, name in rows]


@dataclass(frozen=True)
class AuditEvent:
    object_type: str
    object_name: str  # the cluster's id, the node's name, or the remediation's node
    kind: str
    message: str
    at: Any


def cluster_events(
    session: Session, caller: Caller, cluster_id: str, *, limit: int = TIMELINE_EVENTS
) -> tuple[list[AuditEvent], dict[str, str]]:
    """The newest `limit` audit events of a cluster, its nodes and its remediations
    (oldest first), and each node's health by node name."""
    cluster = get_cluster(session, caller, cluster_id)
    nodes = session.execute(
        select(NodeRow.id, NodeRow.node_name, NodeRow.health).where(
            NodeRow.cluster_id == cluster.id
        )
    ).all()
    node_names = {row_id: name for row_id, name, _ in nodes}
    repairs = {
        row_id: name
        for row_id, name in session.execute(
            select(RemediationRow.id, RemediationRow.instance_name).where(
                RemediationRow.cluster_id == cluster.id
            )
        )
    }
    rows = session.scalars(
        select(EventRow)
        .where(
            or_(
                (EventRow.object_type == "cluster") & (EventRow.object_id == cluster.id),
                (EventRow.object_type == "node") & EventRow.object_id.in_(list(node_names)),
                (EventRow.object_type == "remediation") & EventRow.object_id.in_(list(repairs)),
            )
        )
        .order_by(EventRow.id.desc())
        .limit(limit)
    ).all()
    names = {**node_names, **repairs, cluster.id: cluster.id}
    events = [
        AuditEvent(e.object_type, names.get(e.object_id, e.object_id), e.kind, e.message, e.at)
        for e in reversed(rows)
    ]
    return events, {name: health for _, name, health in nodes}


def fleet_hosts(session: Session) -> list[dict[str, Any]]:
    """Every host as the admin host list shows it, with its open health signals."""
    open_signals: dict[str, int] = {
        host_id: count
        for host_id, count in session.execute(
            select(HealthEventRow.host_id, func.count())
            .where(HealthEventRow.resolved_at.is_(None), HealthEventRow.deleted_at.is_(None))
            .group_by(HealthEventRow.host_id)
        )
    }
    hosts = []
    for host in session.scalars(select(HostRow).order_by(HostRow.region, HostRow.name)):
        view = fleet_state.host_view(host)
        signals = open_signals.get(host.id, 0)
        view["open_health_signals"] = signals
        view["health"] = "unhealthy" if signals else "healthy"
        hosts.append(view)
    return hosts


def utilisation(hosts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per GPU type: hosts and GPUs in all, GPUs serving clusters, hosts by state."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for host in hosts:
        by_type.setdefault(host["gpu_type"], []).append(host)
    result = []
    for gpu_type, group in sorted(by_type.items()):
        total = sum(h["num_gpus"] for h in group)
        used = sum(h["num_gpus"] for h in group if h["cluster_id"] is not None)
        result.append(
            {
                "gpu_type": gpu_type,
                "hosts": len(group),
                "gpus": total,
                "allocated_gpus": used,
                "share_allocated": round(used / total, 4) if total else 0.0,
                "hosts_by_state": dict(sorted(Counter(h["state"] for h in group).items())),
            }
        )
    return result

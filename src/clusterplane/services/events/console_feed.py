"""What changed for one console viewer: the fingerprints its live stream compares.

`GET /console/v1/stream` (api/console_stream.py) calls `read_snapshot` once a poll, in one
short read transaction, and sends `changes(previous, current)` when it is not empty. The
console then reads what it shows again through the API; the stream itself carries ids
only, never data.

A snapshot is scoped to the caller's project (the clusters `GET /v1/compute/clusters`
lists for its key); only an admin key's also holds the fleet. Each poll reads the
project's live clusters and the state of their remediations (both by index). Nodes are
read again only when one of three append-only tables grew anywhere (node phase history,
node lifecycle events, the audit trail, each a primary-key maximum), so an idle server
costs a stream three index lookups and two small scans a poll.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import (
    CapacityPoolRow,
    ClusterPhaseTransitionRow,
    ClusterRow,
    EventRow,
    HealthEventRow,
    HostRow,
    NodeLifecycleEventRow,
    NodePhaseTransitionRow,
    NodeRow,
    RemediationRow,
)
from clusterplane.services.access.auth import Caller

Marks = tuple[int, int, int]


@dataclass(frozen=True)
class Snapshot:
    # Global maxima of node phase transitions, node lifecycle events and audit events.
    marks: Marks
    # Per live cluster of the project: its row, its remediations and its nodes, digested.
    clusters: dict[str, str]
    # Per live cluster: the digest of its nodes (reused while `marks` stand still).
    nodes: dict[str, str]
    # The project's remediations, all clusters together.
    remediations: str
    # The fleet (admin keys only): hosts, open health signals, pools, cluster phases.
    fleet: str | None = None


@dataclass(frozen=True)
class Changes:
    clusters: list[str] = field(default_factory=list)  # new or changed cluster ids
    removed: list[str] = field(default_factory=list)  # clusters gone from the list
    remediations: bool = False
    fleet: bool = False

    def __bool__(self) -> bool:
        return bool(self.clusters or self.removed or self.remediations or self.fleet)

    def body(self) -> dict[str, Any]:
        return {
            "clusters": self.clusters,
            "removed": self.removed,
            "remediations": self.remediations,
            "fleet": self.fleet,
        }


def _digest(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


def _live_clusters(caller: Caller) -> Select[str]:
    return select(ClusterRow.id).where(
        ClusterRow.project_id == caller.project_id, ClusterRow.deleted_at.is_(None)
    )


def _marks(session: Session) -> Marks:
    row = session.execute(
        select(
            select(func.max(NodePhaseTransitionRow.id)).scalar_subquery(),
            select(func.max(NodeLifecycleEventRow.id)).scalar_subquery(),
            select(func.max(EventRow.id)).scalar_subquery(),
        )
    ).one()
    return (row[0] or 0, row[1] or 0, row[2] or 0)


def _node_digests(session: Session, caller: Caller) -> dict[str, str]:
    """Per live cluster of the project: its nodes' statuses, health, newest phase and
    lifecycle event."""
    live = _live_clusters(caller).scalar_subquery()
    parts: dict[str, list[Any]] = {}
    for cluster_id, newest in session.execute(
        select(NodeRow.cluster_id, func.max(NodePhaseTransitionRow.id))
        .join(NodeRow, NodeRow.id == NodePhaseTransitionRow.node_row_id)
        .where(NodeRow.cluster_id.in_(live))
        .group_by(NodeRow.cluster_id)
    ):
        parts.setdefault(cluster_id, []).append(("phase", newest))
    for cluster_id, newest in session.execute(
        select(NodeLifecycleEventRow.cluster_id, func.max(NodeLifecycleEventRow.id))
        .where(NodeLifecycleEventRow.cluster_id.in_(live))
        .group_by(NodeLifecycleEventRow.cluster_id)
    ):
        parts.setdefault(cluster_id, []).append(("lifecycle", newest))
    for cluster_id, name, status, health in session.execute(
        select(NodeRow.cluster_id, NodeRow.node_name, NodeRow.status, NodeRow.health)
        .where(NodeRow.cluster_id.in_(live))
        .order_by(NodeRow.cluster_id, NodeRow.id)
    ):
        parts.setdefault(cluster_id, []).append((name, status, health))
    return {cluster_id: _digest(*items) for cluster_id, items in parts.items()}


def _remediation_digests(session: Session, caller: Caller) -> dict[str, str]:
    rows = session.execute(
        select(RemediationRow.cluster_id, func.count(), func.max(RemediationRow.update_time))
        .where(RemediationRow.cluster_id.in_(_live_clusters(caller).scalar_subquery()))
        .group_by(RemediationRow.cluster_id)
    )
    return {cluster_id: _digest(count, latest) for cluster_id, count, latest in rows}


def _fleet_digest(session: Session) -> str:
    hosts = session.execute(
        select(func.count(), func.count(HostRow.cluster_id), func.max(HostRow.updated_at))
    ).one()
    signals = session.execute(select(func.count(), func.count(HealthEventRow.resolved_at))).one()
    pools = session.execute(select(func.count(), func.count(CapacityPoolRow.deleted_at))).one()
    phases = session.scalar(select(func.max(ClusterPhaseTransitionRow.id)))
    return _digest(tuple(hosts), tuple(signals), tuple(pools), phases)


def read_snapshot(session: Session, caller: Caller, previous: Snapshot | None) -> Snapshot:
    marks = _marks(session)
    rows: list[tuple[str, str, datetime, int]] = [
        (r.id, r.status, r.updated_at, r.num_gpus)
        for r in session.execute(
            select(ClusterRow.id, ClusterRow.status, ClusterRow.updated_at, ClusterRow.num_gpus)
            .where(ClusterRow.project_id == caller.project_id, ClusterRow.deleted_at.is_(None))
            .order_by(ClusterRow.id)
        )
    ]
    if previous is None or previous.marks != marks:
        nodes = _node_digests(session, caller)
    else:
        nodes = previous.nodes
    remediations = _remediation_digests(session, caller)
    clusters = {
        cid: _digest(status, updated, gpus, nodes.get(cid), remediations.get(cid))
        for cid, status, updated, gpus in rows
    }
    return Snapshot(
        marks=marks,
        clusters=clusters,
        nodes=nodes,
        remediations=_digest(sorted(remediations.items())),
        fleet=_fleet_digest(session) if caller.is_admin else None,
    )


def changes(previous: Snapshot, current: Snapshot) -> Changes:
    return Changes(
        clusters=[
            cid for cid, digest in current.clusters.items() if previous.clusters.get(cid) != digest
        ],
        removed=[cid for cid in previous.clusters if cid not in current.clusters],
        remediations=previous.remediations != current.remediations,
        fleet=previous.fleet != current.fleet,
    )

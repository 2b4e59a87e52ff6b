"""Everything a Cluster response shows, loaded in a fixed number of queries for any list.

`load_details` takes cluster rows and returns one `ClusterDetail` each, with nodes, phase
histories, volumes, lifecycle events and latest remediations gathered by bulk queries
(no per-cluster or per-node queries), in stable order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import (
    ClusterPhaseTransitionRow,
    ClusterRow,
    HostRow,
    NodeLifecycleEventRow,
    NodePhaseTransitionRow,
    NodeRow,
    RemediationRow,
    VolumeRow,
)
from clusterplane.domain.enums import NodeRole
from clusterplane.services.remediations import latest_by_node
from clusterplane.services.volumes import volumes_of

EVENT_RETENTION = timedelta(hours=72)


@dataclass
class NodeDetail:
    row: NodeRow
    host: HostRow | None
    transitions: list[NodePhaseTransitionRow] = field(default_factory=list)
    latest_remediation: RemediationRow | None = None


@dataclass
class ClusterDetail:
    row: ClusterRow
    transitions: list[ClusterPhaseTransitionRow] = field(default_factory=list)
    control_plane: list[NodeDetail] = field(default_factory=list)
    workers: list[NodeDetail] = field(default_factory=list)
    deleted_workers: list[NodeDetail] = field(default_factory=list)
    volumes: list[VolumeRow] = field(default_factory=list)
    lifecycle_events: list[NodeLifecycleEventRow] = field(default_factory=list)


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def load_details(
    session: Session, clusters: Sequence[ClusterRow], *, now: datetime
) -> list[ClusterDetail]:
    details = {c.id: ClusterDetail(row=c) for c in clusters}
    ids = list(details)
    for chunk in _chunks(ids):
        for t in session.scalars(
            select(ClusterPhaseTransitionRow)
            .where(ClusterPhaseTransitionRow.cluster_id.in_(chunk))
            .order_by(ClusterPhaseTransitionRow.id)
        ):
            details[t.cluster_id].transitions.append(t)
        for e in session.scalars(
            select(NodeLifecycleEventRow)
            .where(
                NodeLifecycleEventRow.cluster_id.in_(chunk),
                NodeLifecycleEventRow.timestamp >= now - EVENT_RETENTION,
            )
            .order_by(NodeLifecycleEventRow.id)
        ):
            details[e.cluster_id].lifecycle_events.append(e)
    for volume in volumes_of(session, ids):
        if volume.cluster_id is not None:
            details[volume.cluster_id].volumes.append(volume)
    _load_nodes(session, details, ids)
    return [details[c.id] for c in clusters]


def _load_nodes(session: Session, details: dict[str, ClusterDetail], ids: list[str]) -> None:
    nodes: list[NodeRow] = []
    for chunk in _chunks(ids):
        nodes.extend(
            session.scalars(
                select(NodeRow)
                .where(NodeRow.cluster_id.in_(chunk))
                .order_by(NodeRow.role, NodeRow.ordinal)
            )
        )
    node_ids = [n.id for n in nodes]
    transitions: dict[str, list[NodePhaseTransitionRow]] = defaultdict(list)
    latest: dict[str, RemediationRow] = {}
    for chunk in _chunks(node_ids):
        for t in session.scalars(
            select(NodePhaseTransitionRow)
            .where(NodePhaseTransitionRow.node_row_id.in_(chunk))
            .order_by(NodePhaseTransitionRow.id)
        ):
            transitions[t.node_row_id].append(t)
        latest.update(latest_by_node(session, chunk))
    host_ids = [n.host_id for n in nodes if n.host_id]
    hosts: dict[str, HostRow] = {}
    for chunk in _chunks(host_ids):
        hosts.update(
            {h.id: h for h in session.scalars(select(HostRow).where(HostRow.id.in_(chunk)))}
        )
    for node in nodes:
        view = NodeDetail(
            row=node,
            host=hosts.get(node.host_id or ""),
            transitions=transitions[node.id],
            latest_remediation=latest.get(node.id),
        )
        detail = details[node.cluster_id]
        if node.role == NodeRole.CONTROL_PLANE:
            if node.deleted_at is None:
                detail.control_plane.append(view)
        elif node.deleted_at is None:
            detail.workers.append(view)
        else:
            detail.deleted_workers.append(view)

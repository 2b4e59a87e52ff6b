"""The audit trail and phase history: every status change is written through here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from clusterplane.db.rows import (
    ClusterPhaseTransitionRow,
    ClusterRow,
    EventRow,
    NodeLifecycleEventRow,
    NodePhaseTransitionRow,
    NodeRow,
)
from clusterplane.domain.enums import ClusterPhase, NodeLifecycleReason, NodePhase
from clusterplane.domain.lifecycle import node_status, status_for


def record_event(
    session: Session, *, object_type: str, object_id: str, kind: str, message: str, at: datetime
) -> None:
    session.add(
        EventRow(object_type=object_type, object_id=object_id, kind=kind, message=message, at=at)
    )


def set_cluster_phase(
    session: Session, cluster: ClusterRow, phase: ClusterPhase, now: datetime
) -> None:
    """Move a cluster to `phase`: phase, status, history and audit event together."""
    if cluster.phase == phase:
        return
    previous = cluster.phase
    cluster.phase = phase
    cluster.status = status_for(phase)
    cluster.updated_at = now
    session.add(ClusterPhaseTransitionRow(cluster_id=cluster.id, phase=phase, transition_time=now))
    record_event(
        session,
        object_type="cluster",
        object_id=cluster.id,
        kind="phase",
        message=f"{previous} -> {phase}",
        at=now,
    )


def set_node_phase(session: Session, node: NodeRow, phase: NodePhase, now: datetime) -> None:
    if node.phase == phase:
        return
    node.phase = phase
    refresh_node_status(node)
    session.add(NodePhaseTransitionRow(node_row_id=node.id, phase=phase, transition_time=now))


def refresh_node_status(node: NodeRow) -> None:
    node.status = node_status(
        NodePhase(node.phase),
        marked_for_deletion=node.marked_for_deletion,
        deleted=node.deleted_at is not None,
        cordoned=node.cordoned_by is not None,
    )


def node_lifecycle_event(
    session: Session,
    *,
    cluster_id: str,
    node_name: str,
    reason: NodeLifecycleReason,
    message: str,
    now: datetime,
) -> None:
    session.add(
        NodeLifecycleEventRow(
            cluster_id=cluster_id,
            node_name=node_name,
            reason=reason,
            message=message,
            timestamp=now,
        )
    )

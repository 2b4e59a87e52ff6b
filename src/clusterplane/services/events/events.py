"""The audit trail and phase history: every status change is written through here.

Each event carries its `Scope`: the project that sees it (None: only the operator, as for
a host's events) and the cluster and node it concerns, so the log can be queried by
them (services/events/event_log.py) and fanned out to the right webhook endpoints. Writing an
event is one INSERT; it never waits on anything else (the outbox picks it up later).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.orm import Session

from clusterplane.db.prepared import PreparedInsert, reader_of
from clusterplane.db.rows import (
    ClusterPhaseTransitionRow,
    ClusterRow,
    EventRow,
    NodeLifecycleEventRow,
    NodePhaseTransitionRow,
    NodeRow,
    VolumeRow,
)
from clusterplane.domain.enums import ClusterPhase, NodeLifecycleReason, NodePhase
from clusterplane.domain.lifecycle import node_status, status_for


@dataclass(frozen=True)
class Scope:
    """Whose an event is: the project that sees it (None: the operator only), and the
    cluster and node (its row id) it concerns."""

    project_id: str | None = None
    cluster_id: str | None = None
    node_row_id: str | None = None


FLEET = Scope()
"""The scope of the fleet's own events (hosts): the operator's alone."""


def cluster_scope(cluster: ClusterRow, node_row_id: str | None = None) -> Scope:
    return Scope(cluster.project_id, cluster.id, node_row_id)


def volume_scope(volume: VolumeRow) -> Scope:
    return Scope(volume.project_id, volume.cluster_id)


def scope_in(session: Session, cluster_id: str | None, node_row_id: str | None = None) -> Scope:
    """The scope of something in cluster `cluster_id` (None: on no cluster, the fleet's).

    The cluster is nearly always loaded by the caller already (the session's identity map
    answers without a query)."""
    cluster = session.get(ClusterRow, cluster_id) if cluster_id is not None else None
    if cluster is None:
        return FLEET
    return cluster_scope(cluster, node_row_id)


def record_event(
    session: Session,
    *,
    object_type: str,
    object_id: str,
    kind: str,
    message: str,
    at: datetime,
    scope: Scope,
) -> None:
    """One event of the audit trail; its kind is `object_type.kind` (domain/events.py)."""
    session.add(
        EventRow(
            object_type=object_type,
            object_id=object_id,
            kind=kind,
            message=message,
            at=at,
            project_id=scope.project_id,
            cluster_id=scope.cluster_id,
            node_row_id=scope.node_row_id,
        )
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
        scope=cluster_scope(cluster),
    )


_ADD_NODE_TRANSITIONS = PreparedInsert(cast(Table, NodePhaseTransitionRow.__table__))


def set_node_phase(
    session: Session,
    node: NodeRow,
    phase: NodePhase,
    now: datetime,
    *,
    batch: list[dict[str, Any]] | None = None,
) -> None:
    """The node's new phase and its transition; with `batch`, the transition is kept
    there for `write_node_transitions` instead of added to the session."""
    if node.phase == phase:
        return
    node.phase = phase
    refresh_node_status(node)
    if batch is not None:
        batch.append({"node_row_id": node.id, "phase": phase, "transition_time": now})
        return
    session.add(NodePhaseTransitionRow(node_row_id=node.id, phase=phase, transition_time=now))


def write_node_transitions(session: Session, batch: list[dict[str, Any]]) -> None:
    """Many nodes' transitions (`set_node_phase(batch=...)`) in one executemany: no ORM
    object, identity or flush bookkeeping per node (thousands in a large bring-up)."""
    if batch:
        reader_of(session).insert(_ADD_NODE_TRANSITIONS, batch)
        batch.clear()


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

"""Signals clearing: auto-resolve proposals left without a signal, heal nodes left without one.

`resolve_events` clears signals (reported cleared, repaired, or a repair verified): a
`PENDING_APPROVAL` proposal whose every linked signal cleared becomes AUTO_RESOLVED, and
a node with no open unhealthy signal is healthy again (`heal_if_clear`) and, only if we
cordoned it, uncordoned. `alerts_of` gives each remediation its signals (`linked_alerts`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, HealthEventRow, NodeRow, RemediationRow
from clusterplane.domain.enums import RemediationState
from clusterplane.domain.health import Action
from clusterplane.services.events.events import (
    cluster_scope,
    record_event,
    refresh_node_status,
    scope_in,
)
from clusterplane.services.health import health
from clusterplane.services.health.remediations import find_open_remediation

S = RemediationState


def resolve_events(
    session: Session, events: list[HealthEventRow], now: datetime, *, why: str
) -> None:
    """Clear signals; auto-resolve proposals left without one; heal nodes left without one."""
    touched_remediations: set[str] = set()
    touched_nodes: set[str] = set()
    for event in events:
        if event.resolved_at is not None:
            continue
        event.resolved_at = now
        event.next_reconcile_at = None
        record_event(
            session,
            object_type="health_event",
            object_id=event.id,
            kind="resolved",
            message=why,
            at=now,
            scope=scope_in(session, event.cluster_id, event.node_row_id),
        )
        if event.remediation_id:
            touched_remediations.add(event.remediation_id)
        if event.node_row_id:
            touched_nodes.add(event.node_row_id)
    for remediation_id in sorted(touched_remediations):
        row = session.get(RemediationRow, remediation_id)
        if row is not None and row.state == S.PENDING_APPROVAL and not _open_signals(session, row):
            row.state = S.AUTO_RESOLVED
            row.end_time = now
            row.update_time = now
            row.next_reconcile_at = None
            record_event(
                session,
                object_type="remediation",
                object_id=row.id,
                kind="auto_resolved",
                message="every signal behind it cleared before approval",
                at=now,
                scope=scope_in(session, row.cluster_id, row.node_row_id),
            )
    for node_id in sorted(touched_nodes):
        node = session.get(NodeRow, node_id)
        if node is not None:
            heal_if_clear(session, node, now)


def _open_signals(session: Session, row: RemediationRow) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(HealthEventRow)
            .where(HealthEventRow.remediation_id == row.id, HealthEventRow.resolved_at.is_(None))
        )
        or 0
    )


def _lift_stop_if_clear(session: Session, cluster_id: str, now: datetime) -> None:
    """A node is healthy again: forget the stop-rule reason; a signal still held re-checks
    the rule within a minute and records it again if the cluster is still over."""
    cluster = session.get(ClusterRow, cluster_id)
    if cluster is None or cluster.remediation_paused_reason is None:
        return
    cluster.remediation_paused_reason = None
    record_event(
        session,
        object_type="cluster",
        object_id=cluster.id,
        kind="remediation_resumed",
        message="a worker is healthy again",
        at=now,
        scope=cluster_scope(cluster),
    )


def open_events_of_node(session: Session, node_row_id: str) -> list[HealthEventRow]:
    return list(
        session.scalars(
            select(HealthEventRow).where(
                HealthEventRow.node_row_id == node_row_id,
                HealthEventRow.resolved_at.is_(None),
                HealthEventRow.action != Action.NONE,
            )
        )
    )


def open_events_of_host(session: Session, host_id: str) -> list[HealthEventRow]:
    return list(
        session.scalars(
            select(HealthEventRow).where(
                HealthEventRow.host_id == host_id, HealthEventRow.resolved_at.is_(None)
            )
        )
    )


def heal_if_clear(session: Session, node: NodeRow, now: datetime) -> None:
    """A node with no open unhealthy signal is healthy; our cordon (only ours) is lifted.

    A node under an executing repair stays cordoned: the repair lifts it when it ends.
    """
    if node.deleted_at is not None or open_events_of_node(session, node.id):
        return
    executing = find_open_remediation(session, node.id)
    if executing is not None and executing.state not in (S.PENDING_APPROVAL, S.PENDING):
        return
    if node.health != health.HEALTHY:
        node.health = health.HEALTHY
        health.nudge_cluster(session, node.cluster_id, now)
        _lift_stop_if_clear(session, node.cluster_id, now)
    if node.cordoned_by == health.CORDONED_BY_US:
        node.cordoned_by = None
        record_event(
            session,
            object_type="node",
            object_id=node.id,
            kind="uncordoned",
            message="back in service: no open health signal",
            at=now,
            scope=scope_in(session, node.cluster_id, node.id),
        )
    refresh_node_status(node)


def alerts_of(session: Session, remediation_ids: list[str]) -> dict[str, list[HealthEventRow]]:
    """The signals linked to each remediation, oldest first (its `linked_alerts`)."""
    linked: dict[str, list[HealthEventRow]] = {rid: [] for rid in remediation_ids}
    if not remediation_ids:
        return linked
    for event in session.scalars(
        select(HealthEventRow)
        .where(HealthEventRow.remediation_id.in_(remediation_ids))
        .order_by(HealthEventRow.ingested_at, HealthEventRow.id)
    ):
        linked[event.remediation_id or ""].append(event)
    return linked

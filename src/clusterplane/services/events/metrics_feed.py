"""Counts what committed transactions did to clusters, health events and remediations.

`install(sessions, metrics)` listens to the application's session factory. After each
flush it notes the row changes a counter cares about: a cluster inserted, finally deleted
(`deleted_at` set), or Ready for the first time (`first_ready_at` set: the create -> Ready
histogram); a health event inserted; a remediation inserted or its `state` changed. The
counters move only when the transaction commits; a rollback forgets what it noted. So
every code path that writes these rows is counted, once, by the replica that committed
it, and no service needs to know about metrics. (A rolled-back savepoint forgets what the
whole transaction noted so far: the two in use are retried or fail the request.)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.rows import ClusterRow, HealthEventRow, RemediationRow
from clusterplane.metrics import Metrics

PENDING = "clusterplane.metrics_pending"
"""The `Session.info` key of what the transaction in progress will count on commit."""

Count = Callable[[Metrics], None]


def install(sessions: sessionmaker[Session], metrics: Metrics) -> None:
    event.listen(sessions, "after_flush", _note)
    event.listen(sessions, "after_commit", partial(_apply, metrics))
    event.listen(sessions, "after_rollback", _forget)


def _note(session: Session, _flush: Any) -> None:
    """Runs with `new` and `dirty` still as they were before the flush, history intact."""
    counts: list[Count] = []
    for row in session.new:
        if isinstance(row, ClusterRow):
            counts.append(partial(_cluster_created, row.cluster_type))
        elif isinstance(row, HealthEventRow):
            counts.append(partial(_health_event, row.kind, row.severity))
        elif isinstance(row, RemediationRow):
            counts.append(partial(_remediation_entered, row.mode, row.state))
    for row in session.dirty:
        if isinstance(row, ClusterRow):
            counts.extend(_cluster_changes(row))
        elif isinstance(row, RemediationRow) and _newly_set(row, "state"):
            counts.append(partial(_remediation_entered, row.mode, row.state))
    if counts:
        session.info.setdefault(PENDING, []).extend(counts)


def _cluster_changes(row: ClusterRow) -> list[Count]:
    counts: list[Count] = []
    if row.first_ready_at is not None and _newly_set(row, "first_ready_at"):
        started = max(row.created_at, row.reservation_start_time or row.created_at)
        seconds = (row.first_ready_at - started).total_seconds()
        counts.append(partial(_cluster_ready, row.cluster_type, max(seconds, 0.0)))
    if row.deleted_at is not None and _newly_set(row, "deleted_at"):
        counts.append(partial(_cluster_deleted, row.cluster_type))
    return counts


def _newly_set(row: Any, attribute: str) -> bool:
    """Whether this flush gave `attribute` a value other than the one it had."""
    history = inspect(row).attrs[attribute].history
    return bool(history.added) and list(history.added) != list(history.deleted)


def _apply(metrics: Metrics, session: Session) -> None:
    for count in session.info.pop(PENDING, ()):
        count(metrics)


def _forget(session: Session) -> None:
    session.info.pop(PENDING, None)


def _cluster_created(cluster_type: str, metrics: Metrics) -> None:
    metrics.clusters_created.labels(cluster_type).inc()


def _cluster_deleted(cluster_type: str, metrics: Metrics) -> None:
    metrics.clusters_deleted.labels(cluster_type).inc()


def _cluster_ready(cluster_type: str, seconds: float, metrics: Metrics) -> None:
    metrics.cluster_ready_seconds.labels(cluster_type).observe(seconds)


def _health_event(kind: str, severity: str, metrics: Metrics) -> None:
    metrics.health_events.labels(kind, severity).inc()


def _remediation_entered(mode: str, state: str, metrics: Metrics) -> None:
    metrics.remediation_transitions.labels(mode, state).inc()

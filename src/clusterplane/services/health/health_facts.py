"""What deciding a node's automatic repair reads, for many nodes in a few queries.

`services.health` asks two questions about the node a signal concerns: its remediation
history (an open repair to link to, when the last one ended, a recent repair that did not
help) and how many of its cluster's GPU workers are unhealthy (the stop rule).
`NodeFacts.load` answers both for a set of nodes with one query each, so a batch of
signals (`services.health.health_reports`) costs the same two queries as one signal.

Invariants:
    * The facts are read inside the caller's transaction and kept current by the caller
      for what it changes there: `excluded` when it marks a node unhealthy, `proposed`
      when it opens a remediation. Nothing else in an ingest changes them.
    * Each node's history holds its newest `HISTORY_LIMIT` remediations, newest first
      (create time, then id), exactly as one node's own query would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import NodeRow, RemediationRow
from clusterplane.domain.enums import (
    NodePhase,
    NodeRole,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from clusterplane.domain.remediation import TERMINAL
from clusterplane.settings import HealthSettings

UNHEALTHY = "unhealthy"
HISTORY_LIMIT = 100
DID_NOT_HELP = (RemediationState.SUCCEEDED, RemediationState.FAILED)


@dataclass(frozen=True)
class History:
    """What a node's remediations say about the next automatic one."""

    open: RemediationRow | None
    last_ended_at: datetime | None
    did_not_help: RemediationMode | None  # a recent automatic repair's mode, to escalate


def is_unhealthy_worker(health: str, phase: str) -> bool:
    """A serving GPU worker counts as unhealthy when flagged so or not running."""
    return health == UNHEALTHY or phase != NodePhase.RUNNING


def history_of(rows: Sequence[RemediationRow], settings: HealthSettings, now: datetime) -> History:
    """The history a node's remediations (newest first) describe at `now`."""
    open_row = next((r for r in rows if r.state not in TERMINAL), None)
    ended = [r for r in rows if r.end_time is not None]
    since = now - timedelta(seconds=settings.escalation_window_seconds)
    recent = [
        r
        for r in ended
        if r.trigger == RemediationTrigger.AUTOMATED
        and r.state in DID_NOT_HELP
        and r.end_time is not None
        and r.end_time >= since
    ]
    last = max(ended, key=lambda r: (r.end_time, r.id), default=None)
    previous = max(recent, key=lambda r: (r.end_time, r.id), default=None)
    return History(
        open=open_row,
        last_ended_at=last.end_time if last else None,
        did_not_help=RemediationMode(previous.mode) if previous else None,
    )


class NodeFacts:
    def __init__(
        self,
        remediations: dict[str, list[RemediationRow]],
        workers: dict[str, dict[str, bool]],
    ):
        self._remediations = remediations
        self._workers = workers  # cluster id -> serving GPU worker id -> unhealthy

    @classmethod
    def load(cls, session: Session, nodes: Iterable[NodeRow]) -> NodeFacts:
        wanted = {n.id: n.cluster_id for n in nodes}
        return cls(
            _remediations(session, sorted(wanted)),
            _workers(session, sorted(set(wanted.values()))),
        )

    def history(self, node_id: str, settings: HealthSettings, now: datetime) -> History:
        return history_of(self._remediations.get(node_id, []), settings, now)

    def worker_health(self, cluster_id: str) -> tuple[int, int]:
        """(unhealthy, serving) GPU workers of the cluster, as `health.worker_health`."""
        workers = self._workers.get(cluster_id, {})
        return sum(workers.values()), len(workers)

    def excluded(self, node: NodeRow) -> None:
        workers = self._workers.get(node.cluster_id)
        if workers is not None and node.id in workers:
            workers[node.id] = True

    def proposed(self, row: RemediationRow) -> None:
        self._remediations.setdefault(row.node_row_id, []).insert(0, row)


def _remediations(session: Session, node_ids: list[str]) -> dict[str, list[RemediationRow]]:
    found: dict[str, list[RemediationRow]] = {node_id: [] for node_id in node_ids}
    if not node_ids:
        return found
    newest_first = (RemediationRow.create_time.desc(), RemediationRow.id.desc())
    ranked = (
        select(
            RemediationRow.id,
            func.row_number()
            .over(partition_by=RemediationRow.node_row_id, order_by=newest_first)
            .label("rank"),
        )
        .where(RemediationRow.node_row_id.in_(node_ids))
        .subquery()
    )
    rows = session.scalars(
        select(RemediationRow)
        .join(ranked, ranked.c.id == RemediationRow.id)
        .where(ranked.c.rank <= HISTORY_LIMIT)
        .order_by(RemediationRow.node_row_id, *newest_first)
    )
    for row in rows:
        found[row.node_row_id].append(row)
    return found


def _workers(session: Session, cluster_ids: list[str]) -> dict[str, dict[str, bool]]:
    found: dict[str, dict[str, bool]] = {cluster_id: {} for cluster_id in cluster_ids}
    if not cluster_ids:
        return found
    rows = session.execute(
        select(NodeRow.cluster_id, NodeRow.id, NodeRow.health, NodeRow.phase).where(
            NodeRow.cluster_id.in_(cluster_ids),
            NodeRow.role == NodeRole.GPU_WORKER,
            NodeRow.deleted_at.is_(None),
            NodeRow.marked_for_deletion.is_(False),
        )
    )
    for cluster_id, node_id, health, phase in rows:
        found[cluster_id][node_id] = is_unhealthy_worker(health, phase)
    return found

"""Node agents' health reports, many in one transaction: the write side of a failure storm.

Who calls it: the health API's group commit (`api/routers/health.py`), which hands over
every report that arrived while the previous batch was being written.

`ingest_reports` resolves every report's host and checks its signal first, then reads
what the decisions need set-based (the serving nodes, their clusters and projects into the
session's identity map; remediation history and worker health as `NodeFacts`), and only
then runs `health.ingest_event` for each report in arrival order. So a batch costs a
handful of queries and one flush at commit, where one report alone costs a dozen
statements and several flushes, and the outcome of each report is what it would have been
had the batch's reports been ingested one after another.

Invariants:
    * A report refused (unknown host, no host named, an XID without its code) gets its
      error as its outcome and wrote nothing; the others go on.
    * Anything raised while writing is raised: the caller rolls the batch back and writes
      each report in a transaction of its own, so one bad report never fails the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, HealthEventRow, HostRow, NodeRow, ProjectRow
from clusterplane.domain.health import classify
from clusterplane.errors import ClusterplaneError, InvalidRequest
from clusterplane.services.health import health
from clusterplane.services.health.health_facts import NodeFacts
from clusterplane.settings import Settings

R = TypeVar("R", NodeRow, ClusterRow, ProjectRow)


@dataclass(frozen=True)
class Report:
    """One agent's report: the host (by name, or by the instance it serves) and the signal."""

    host_name: str | None
    instance_id: str | None
    signal: health.Signal


def ingest_reports(
    session: Session, settings: Settings, reports: Sequence[Report], now: datetime
) -> list[HealthEventRow | ClusterplaneError]:
    """Ingest `reports` in order; each one's stored event, or the error that refused it."""
    refused: dict[int, ClusterplaneError] = {}
    accepted: list[tuple[int, HostRow, health.Signal]] = []
    hosts = health.find_hosts(session, [(r.host_name, r.instance_id) for r in reports])
    for index, (report, host) in enumerate(zip(reports, hosts, strict=True)):
        if isinstance(host, ClusterplaneError):
            refused[index] = host
            continue
        try:
            health.check_signal(report.signal)
        except InvalidRequest as refusal:
            refused[index] = refusal
            continue
        accepted.append((index, host, report.signal))
    # The identity map holds clean rows weakly: `preloaded` keeps them for the batch.
    facts, preloaded = _preload(session, accepted)
    stored = {
        index: health.ingest_event(session, settings, host, signal, now, facts=facts)
        for index, host, signal in accepted
    }
    del preloaded
    return [refused[i] if i in refused else stored[i] for i in range(len(reports))]


def _preload(
    session: Session, accepted: list[tuple[int, HostRow, health.Signal]]
) -> tuple[NodeFacts, list[object]]:
    """Serving nodes, clusters and projects into the identity map; facts for the unhealthy."""
    node_ids = sorted({h.node_row_id for _, h, _ in accepted if h.node_row_id is not None})
    nodes = _by_id(session, NodeRow, node_ids)
    clusters = _by_id(session, ClusterRow, sorted({n.cluster_id for n in nodes}))
    projects = _by_id(session, ProjectRow, sorted({c.project_id for c in clusters}))
    unhealthy = []
    for _, host, signal in accepted:
        node = health.serving_node(session, host)
        if node is not None and classify(signal.kind, signal.code).unhealthy:
            unhealthy.append(node)
    return NodeFacts.load(session, unhealthy), [*nodes, *clusters, *projects]


def _by_id(session: Session, row_type: type[R], ids: list[str]) -> list[R]:
    if not ids:
        return []
    return list(session.scalars(select(row_type).where(row_type.id.in_(ids))))

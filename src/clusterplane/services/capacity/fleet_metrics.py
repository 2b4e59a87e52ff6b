"""Gauges of the database's state, read when Prometheus scrapes, and of the pool.

`FleetCollector` (registered in the application's registry by `app.build`) reports live
clusters by status and type, hosts and their GPUs by region, GPU type and state, open
health events by kind and severity, open remediations by mode and state, and the due rows
waiting for each controller. They are computed, not kept up to date as things change: one
short read transaction of GROUP BY queries, whose result is reused for `cache_seconds`
(concurrent scrapes share one read), so scrapes cost the database little however often
they come. Due rows are counted up to `DUE_CAP` per controller. Every known label
combination is reported, zeros included, so a series never vanishes. When the read fails
the gauges are left out and `clusterplane_database_up` is 0; the connection pool's gauges
need no read and are always there.

Every replica reports the same fleet-wide figures: aggregate them with `max`, not `sum`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from clusterplane.clock import Clock
from clusterplane.db import leases
from clusterplane.db.engine import read_transaction
from clusterplane.db.rows import ClusterRow, HealthEventRow, HostRow, RemediationRow
from clusterplane.domain.enums import (
    ClusterStatus,
    ClusterType,
    HostState,
    RemediationMode,
    RemediationState,
)
from clusterplane.domain.health import EventKind, Severity
from clusterplane.domain.remediation import TERMINAL
from clusterplane.metrics import PREFIX

log = logging.getLogger(__name__)
DUE_CAP = 10_000
OPEN_REMEDIATION_STATES = [s.value for s in RemediationState if s not in TERMINAL]


@dataclass(frozen=True)
class Queue:
    """A controller and the table its due rows are in."""

    controller: str
    row_type: Any


class FleetCollector(Collector):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        clock: Clock,
        lease_clock: Clock,
        queues: Sequence[Queue],
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.sessions = sessions
        self.clock = clock
        self.lease_clock = lease_clock
        self.queues = list(queues)
        self.cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._read_at = -math.inf

    def collect(self) -> Iterator[Metric]:
        yield from _pool(self.sessions.kw["bind"])
        yield from self._database()

    def _database(self) -> list[Metric]:
        with self._lock:
            if self._monotonic() - self._read_at >= self.cache_seconds:
                self._cached = self._read()
                self._read_at = self._monotonic()
            return self._cached

    def _read(self) -> list[Metric]:
        started = time.perf_counter()
        families: list[Metric] = []
        try:
            with read_transaction(self.sessions) as session:
                families = [
                    _clusters(session),
                    *_hosts(session),
                    _open_health_events(session),
                    _open_remediations(session),
                    self._due_rows(session),
                ]
        except Exception as exc:
            log.warning("metrics: the database figures could not be read", exc_info=exc)
            families = []
        up = _gauge("database_up", "1 when the last read of the database figures worked.")
        up.add_metric([], 1 if families else 0)
        took = _gauge("fleet_metrics_read_seconds", "Wall seconds the database figures took.")
        took.add_metric([], time.perf_counter() - started)
        return [*families, up, took]

    def _due_rows(self, session: Session) -> GaugeMetricFamily:
        family = _gauge(
            "controller_due_rows",
            f"Rows due for a controller and not leased (counted up to {DUE_CAP}).",
            ["controller"],
        )
        fleet_now, wall = self.clock.now(), self.lease_clock.now()
        for queue in self.queues:
            due = leases.count_due(
                session, queue.row_type, fleet_now=fleet_now, wall=wall, cap=DUE_CAP
            )
            family.add_metric([queue.controller], due)
        return family


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels))


def _filled(
    family: GaugeMetricFamily,
    found: Iterable[tuple[tuple[str, ...], float]],
    known: Iterable[tuple[str, ...]],
) -> GaugeMetricFamily:
    """`family` with a sample for every label tuple found or known (0 when not found)."""
    values = {labels: 0.0 for labels in known}
    for labels, value in found:
        values[labels] = values.get(labels, 0.0) + float(value)
    for labels, value in sorted(values.items()):
        family.add_metric(list(labels), value)
    return family


def _clusters(session: Session) -> GaugeMetricFamily:
    rows = session.execute(
        select(ClusterRow.status, ClusterRow.cluster_type, func.count())
        .where(ClusterRow.deleted_at.is_(None))
        .group_by(ClusterRow.status, ClusterRow.cluster_type)
    )
    family = _gauge(
        "clusters",
        "Live (not yet deleted) clusters by status and type.",
        ["status", "cluster_type"],
    )
    known = [(s.value, t.value) for s in ClusterStatus for t in ClusterType]
    return _filled(family, (((s, t), n) for s, t, n in rows), known)


def _hosts(session: Session) -> list[GaugeMetricFamily]:
    rows = session.execute(
        select(
            HostRow.region,
            HostRow.gpu_type,
            HostRow.state,
            func.count(),
            func.sum(HostRow.num_gpus),
        ).group_by(HostRow.region, HostRow.gpu_type, HostRow.state)
    ).all()
    labels = ["region", "gpu_type", "state"]
    hosts = _gauge("hosts", "Fleet hosts by region, GPU type and state.", labels)
    gpus = _gauge("gpus", "GPUs of the fleet's hosts by region, GPU type and state.", labels)
    pairs = {(region, gpu_type) for region, gpu_type, *_ in rows}
    known = [(r, g, s.value) for r, g in pairs for s in HostState]
    return [
        _filled(hosts, (((r, g, s), n) for r, g, s, n, _ in rows), known),
        _filled(gpus, (((r, g, s), gpus or 0) for r, g, s, _, gpus in rows), known),
    ]


def _open_health_events(session: Session) -> GaugeMetricFamily:
    rows = session.execute(
        select(HealthEventRow.kind, HealthEventRow.severity, func.count())
        .where(HealthEventRow.resolved_at.is_(None), HealthEventRow.deleted_at.is_(None))
        .group_by(HealthEventRow.kind, HealthEventRow.severity)
    )
    family = _gauge(
        "health_events_open", "Unresolved health events by kind and severity.", ["kind", "severity"]
    )
    known = [(k.value, s.value) for k in EventKind for s in Severity]
    return _filled(family, (((k, s), n) for k, s, n in rows), known)


def _open_remediations(session: Session) -> GaugeMetricFamily:
    rows = session.execute(
        select(RemediationRow.mode, RemediationRow.state, func.count())
        .where(RemediationRow.state.not_in(sorted(TERMINAL)))
        .group_by(RemediationRow.mode, RemediationRow.state)
    )
    family = _gauge(
        "remediations_open",
        "Remediations not yet ended, by mode (the repair action) and state.",
        ["mode", "state"],
    )
    known = [(m.value, s) for m in RemediationMode for s in OPEN_REMEDIATION_STATES]
    return _filled(family, (((m, s), n) for m, s, n in rows), known)


def _pool(engine: Engine) -> list[GaugeMetricFamily]:
    """The connection pool: connections in use and idle, and how many it may open."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return []
    connections = _gauge(
        "db_pool_connections", "Database connections of this process by state.", ["state"]
    )
    connections.add_metric(["in_use"], pool.checkedout())
    connections.add_metric(["idle"], pool.checkedin())
    families = [connections]
    if pool._max_overflow >= 0:  # -1: no bound
        most = _gauge("db_pool_max_connections", "Connections the pool may open at most.")
        most.add_metric([], pool.size() + pool._max_overflow)
        families.append(most)
    return families

"""The server's Prometheus instruments, in a registry of the application's own.

`Metrics()` makes a fresh `CollectorRegistry` holding every instrument below plus the
process, platform and garbage-collector collectors, so several applications in one
process (tests, benchmarks) never share or clash over a series. The composition root
(`app.build`) makes one and hands it to the request middleware (`api.request_metrics`),
the controllers (`ControllerContext.metrics`) and the row feed (`services.events.metrics_feed`);
`GET /metrics` renders the registry. Gauges of the database's state are not kept here: a
collector reads them at scrape time (`services.capacity.fleet_metrics`).

Every label value comes from a bounded set (route templates, known HTTP methods, status
codes, controller names, the domain's enums), so no client can grow the number of series.
docs/metrics.md describes every series; a test keeps the two in step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector

PREFIX = "clusterplane"
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
PASS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Fleet seconds from creation (or a reservation's start) to Ready: minutes to hours.
READY_BUCKETS = (60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 14400, 28800)
ROW_OUTCOMES = ("done", "not_yet", "error", "lost")
"""What became of a row a controller pass claimed: reconciled; a driver said "not yet";
the reconcile raised; the lease was lost before its turn came."""


@dataclass(frozen=True)
class ControllerInstruments:
    """One controller's children of the controller series, bound once (cheap to use)."""

    pass_seconds: Histogram
    rows: dict[str, Counter]
    takeovers: Counter
    claim_errors: Counter
    last_pass: Gauge


class Metrics:
    def __init__(self) -> None:
        # No `_created` twin of every counter and histogram (half the series, no use in
        # PromQL); the switch is the library's, process-wide.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._http()
        self._controllers()
        self._rows()
        self._bound: dict[str, ControllerInstruments] = {}
        self._bound_lock = threading.Lock()

    def _http(self) -> None:
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Wall seconds from a request's arrival to its response's last byte.",
            ["route", "method"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.requests_in_flight = Gauge(
            f"{PREFIX}_http_requests_in_flight",
            "HTTP requests being answered now.",
            registry=self.registry,
        )

    def _controllers(self) -> None:
        labels = ["controller"]
        self.pass_seconds = Histogram(
            f"{PREFIX}_controller_pass_duration_seconds",
            "Wall seconds of a controller pass that found due rows (claim and reconcile).",
            labels,
            buckets=PASS_BUCKETS,
            registry=self.registry,
        )
        self.controller_rows = Counter(
            f"{PREFIX}_controller_rows",
            "Rows a controller pass claimed, by outcome: done, not_yet, error, lost.",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.lease_takeovers = Counter(
            f"{PREFIX}_controller_lease_takeovers",
            "Rows claimed whose earlier lease had lapsed unreleased (a worker died or overran).",
            labels,
            registry=self.registry,
        )
        self.claim_errors = Counter(
            f"{PREFIX}_controller_claim_errors",
            "Passes that could not look for or lease due rows (the database failed).",
            labels,
            registry=self.registry,
        )
        self.last_pass = Gauge(
            f"{PREFIX}_controller_last_pass_timestamp_seconds",
            "Unix time a controller last finished a pass, with or without work.",
            labels,
            registry=self.registry,
        )

    def _rows(self) -> None:
        self.clusters_created = Counter(
            f"{PREFIX}_clusters_created",
            "Clusters created (committed by this replica).",
            ["cluster_type"],
            registry=self.registry,
        )
        self.clusters_deleted = Counter(
            f"{PREFIX}_clusters_deleted",
            "Clusters whose teardown finished (committed by this replica).",
            ["cluster_type"],
            registry=self.registry,
        )
        self.cluster_ready_seconds = Histogram(
            f"{PREFIX}_cluster_ready_duration_seconds",
            "Fleet seconds from a cluster's creation (or its reservation's start) to its "
            "first Ready.",
            ["cluster_type"],
            buckets=READY_BUCKETS,
            registry=self.registry,
        )
        self.health_events = Counter(
            f"{PREFIX}_health_events",
            "Health events recorded, by kind and severity.",
            ["kind", "severity"],
            registry=self.registry,
        )
        self.remediation_transitions = Counter(
            f"{PREFIX}_remediation_transitions",
            "Remediations that entered a state, by mode (the repair action) and state.",
            ["mode", "state"],
            registry=self.registry,
        )

    def controller(self, name: str) -> ControllerInstruments:
        """The instruments of controller `name` (bound on first use)."""
        bound = self._bound.get(name)
        if bound is None:
            with self._bound_lock:
                bound = self._bound.get(name) or ControllerInstruments(
                    pass_seconds=self.pass_seconds.labels(name),
                    rows={o: self.controller_rows.labels(name, o) for o in ROW_OUTCOMES},
                    takeovers=self.lease_takeovers.labels(name),
                    claim_errors=self.claim_errors.labels(name),
                    last_pass=self.last_pass.labels(name),
                )
                self._bound[name] = bound
        return bound

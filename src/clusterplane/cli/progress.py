"""Following a cluster until it settles: the phase changes of the cluster and its nodes as
they appear, and a verdict (`clusters create`, `watch`, `scale --wait`).

`follow` polls `GET /v1/compute/clusters/{id}` every `interval` seconds. A phase history
on the wire only grows, so what is new since the last poll is the tail past the entries
already seen (per cluster, per node); it is shown oldest first, with the server's times.
`verdict` (pure) says when to stop:

* settled (exit 0): status Ready, every live node RUNNING, none marked for deletion, and
  the standard workers hold `num_gpus` GPUs (a scale is not done while new nodes boot);
* failed (exit 5): a node is NODE_PHASE_FAILED, the cluster is Deleting, or it is gone;
* otherwise go on: a failed test phase is not final (failing hosts are replaced and the
  tests run again), nor is a wait for capacity (`--timeout` bounds it: exit 6), nor a
  few polls the server could not answer (`Poller`).

Displays (cli/displays.py) get `created`, `change`, `tick` and `finish` calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from clusterplane.cli.exits import CLUSTER_FAILED, OK, TIMED_OUT, UNAVAILABLE, CliError
from clusterplane.cli.http import Api, ApiError
from clusterplane.domain.enums import ClusterPhase
from clusterplane.domain.lifecycle import status_for

CLUSTERS = "/v1/compute/clusters"
RUNNING = "NODE_PHASE_RUNNING"
FAILED = "NODE_PHASE_FAILED"
Cluster = dict[str, Any]
RETRIED_STATUSES = frozenset({408, 409, 429})
MAX_MISSES = 10


@dataclass(frozen=True)
class Change:
    """One phase transition: of the cluster (`node_id` None) or of one of its nodes."""

    at: datetime
    phase: str
    node_id: str | None = None
    role: str | None = None
    host_name: str | None = None

    @property
    def status(self) -> str | None:
        """The cluster status this cluster phase shows as (None for a node or unknown)."""
        if self.node_id is not None or self.phase not in ClusterPhase.__members__.values():
            return None
        return str(status_for(ClusterPhase(self.phase)))


@dataclass(frozen=True)
class Verdict:
    code: int
    outcome: str  # ready, failed, deleting, deleted, timeout
    message: str


class Display(Protocol):
    def created(self, cluster: Cluster) -> None: ...
    def change(self, change: Change) -> None: ...
    def tick(self, cluster: Cluster, elapsed: float) -> None: ...
    def finish(self, verdict: Verdict, cluster: Cluster | None, elapsed: float) -> None: ...


def when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def last_phase(node: dict[str, Any]) -> str | None:
    history = node.get("phase_transitions") or []
    return str(history[-1]["phase"]) if history else None


def nodes(cluster: Cluster) -> list[tuple[str, dict[str, Any]]]:
    """(role, node) of every node on the wire, live first, then deleted workers."""
    return [
        *(("control-plane", n) for n in cluster.get("control_plane_nodes") or []),
        *(("gpu-worker", n) for n in cluster.get("gpu_worker_nodes") or []),
        *(("gpu-worker", n) for n in cluster.get("deleted_gpu_worker_nodes") or []),
    ]


def changes(cluster: Cluster, seen: dict[str, int]) -> list[Change]:
    """Transitions not in `seen` (entries seen per history), oldest first; updates `seen`."""
    found: list[Change] = []
    history = cluster.get("phase_transitions") or []
    found += [Change(when(t["transition_time"]), t["phase"]) for t in history[seen.get("", 0) :]]
    seen[""] = len(history)
    for role, node in nodes(cluster):
        key = f"node:{node['node_id']}"
        steps = node.get("phase_transitions") or []
        found += [
            Change(when(t["transition_time"]), t["phase"], node["node_id"], role, node["host_name"])
            for t in steps[seen.get(key, 0) :]
        ]
        seen[key] = max(seen.get(key, 0), len(steps))
    return sorted(found, key=lambda c: (c.at, c.node_id is not None))


def current(cluster: Cluster) -> dict[str, int]:
    """A `seen` that leaves only the latest phase of the cluster and of each live node new:
    following an existing cluster starts from where it is, not from its whole history."""
    seen = {"": max(len(cluster.get("phase_transitions") or []) - 1, 0)}
    for _, node in nodes(cluster):
        steps = len(node.get("phase_transitions") or [])
        seen[f"node:{node['node_id']}"] = steps if node.get("deleted_at") else max(steps - 1, 0)
    return seen


def _standard_gpus(cluster: Cluster) -> int:
    workers = cluster.get("gpu_worker_nodes") or []
    total = sum(int(n.get("num_gpus") or 0) for n in workers)
    return total - int(cluster.get("allocated_preemptible_gpus") or 0)


def verdict(cluster: Cluster) -> Verdict | None:
    """Whether following `cluster` is over, and how; None: keep following."""
    name = f"cluster {cluster['cluster_name']} ({cluster['cluster_id']})"
    if cluster.get("status") == "Deleting":
        return Verdict(CLUSTER_FAILED, "deleting", f"{name} is being deleted")
    live = [(role, n) for role, n in nodes(cluster) if not n.get("deleted_at")]
    for role, node in live:
        if last_phase(node) == FAILED:
            host = node.get("host_name") or "-"
            return Verdict(
                CLUSTER_FAILED, "failed", f"{name} failed: {role} {node['node_id']} on {host}"
            )
    settled = (
        cluster.get("status") == "Ready"
        and all(last_phase(n) == RUNNING and not n.get("marked_for_deletion") for _, n in live)
        and _standard_gpus(cluster) == cluster.get("num_gpus")
    )
    return Verdict(OK, "ready", f"{name} is Ready") if settled else None


class Poller:
    """Reads the cluster again; rides out up to MAX_MISSES transient failures in a row (the
    server failed or was out of reach, or answered 408, 409 or 429) with the last answer."""

    def __init__(self, api: Api, cluster_id: str):
        self.api = api
        self.path = f"{CLUSTERS}/{cluster_id}"
        self.misses = 0

    def get(self, last: Cluster) -> Cluster | None:
        """The cluster now, `last` after a transient failure, None once it is gone."""
        try:
            fresh = self.api.call("GET", self.path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            if exc.status not in RETRIED_STATUSES or self._missed():
                raise
            return last
        except CliError as exc:
            if exc.code != UNAVAILABLE or self._missed():
                raise
            return last
        self.misses = 0
        return fresh

    def _missed(self) -> bool:
        self.misses += 1
        return self.misses > MAX_MISSES


def follow(
    api: Api,
    display: Display,
    cluster: Cluster,
    *,
    interval: float,
    timeout: float | None,
    history: bool = False,
) -> int:
    """Poll from `cluster` (the latest answer) until a verdict; return its exit code.

    With `history` every transition so far is shown first, else each one's latest phase.
    """
    cluster_id = cluster["cluster_id"]
    start = time.monotonic()
    seen: dict[str, int] = {} if history else current(cluster)
    poller = Poller(api, cluster_id)
    while True:
        for change in changes(cluster, seen):
            display.change(change)
        elapsed = time.monotonic() - start
        found = verdict(cluster)
        if found is None and timeout is not None and elapsed >= timeout:
            status = cluster.get("status")
            message = f"cluster {cluster_id} is not Ready after {timeout:g}s (status {status})"
            found = Verdict(TIMED_OUT, "timeout", message)
        if found is not None:
            display.finish(found, cluster, elapsed)
            return found.code
        display.tick(cluster, elapsed)
        time.sleep(interval)
        fresh = poller.get(cluster)
        if fresh is None:
            gone = Verdict(CLUSTER_FAILED, "deleted", f"cluster {cluster_id} is gone (deleted)")
            display.finish(gone, None, time.monotonic() - start)
            return gone.code
        cluster = fresh

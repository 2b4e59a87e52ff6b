"""A server killed with SIGKILL mid-operation converges after a restart on the same database.

The first server runs fleet time slowly (x60 or x30) so the test can stop it in the middle
of a bring-up or a teardown; the restarted one runs x3000 so convergence takes a moment.
Every check goes through the public API and the admin fleet view, as an operator would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.support.clusters import BRING_UP
from tests.support.server import SMALL_FLEET, ServerProcess

T = TypeVar("T")

CLUSTERS = "/v1/compute/clusters"
HOSTS = "/admin/v1/fleet/hosts"
CREATE = {
    "cluster_name": "crash",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 32,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
WORKERS = 4  # 32 GPUs on 8-GPU hosts
# Leases of a killed server expire after 30 wall seconds; a restart may wait that out.
CONVERGE_TIMEOUT = 60.0


def wait_for(probe: Callable[[], T | None], what: str, timeout: float) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def get_cluster(http: httpx.Client, cluster_id: str) -> dict[str, Any]:
    response = http.get(f"{CLUSTERS}/{cluster_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def hosts(http: httpx.Client) -> list[dict[str, Any]]:
    response = http.get(HOSTS)
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["hosts"]
    return listed


def restart(first: ServerProcess, workdir: Path, time_scale: float) -> ServerProcess:
    """A new server process on `first`'s database, with the same admin key."""
    second = ServerProcess(
        workdir, time_scale=time_scale, fleet=SMALL_FLEET, database_url=first.database_url
    )
    second.api_key = first.api_key
    return second.start()


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_history_is_clean(transitions: list[dict[str, Any]], what: str) -> None:
    phases = [t["phase"] for t in transitions]
    assert len(phases) == len(set(phases)), f"{what}: a phase entered twice: {phases}"
    times = [when(t["transition_time"]) for t in transitions]
    assert times == sorted(times), f"{what}: transitions out of time order: {transitions}"


def launched(worker: dict[str, Any]) -> bool:
    return any(t["phase"] != "NODE_PHASE_PENDING" for t in worker["phase_transitions"])


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Every server a test starts; all are killed at the end, whatever happened."""
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        proc.kill()


def test_a_cluster_whose_server_was_killed_mid_bring_up_becomes_ready_after_a_restart(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    first = ServerProcess(tmp_path, time_scale=60, fleet=SMALL_FLEET)
    servers.append(first.start())
    with first.client() as http:
        created = http.post(CLUSTERS, json=CREATE)
        assert created.status_code == 200, created.text
        cluster_id = created.json()["cluster_id"]

        def mid_flight() -> dict[str, Any] | None:
            cluster = get_cluster(http, cluster_id)
            workers = cluster["gpu_worker_nodes"]
            in_flight = (
                cluster["status"] == "WaitingForDataPlaneNodes"
                and any(launched(w) for w in workers)
                and not all(w["status"] == "Running" for w in workers)
            )
            return cluster if in_flight else None

        before = wait_for(mid_flight, "workers launched but not all running", 30)
    first.kill()

    second = restart(first, tmp_path, time_scale=3000)
    servers.append(second)
    with second.client() as http:
        cluster = wait_for(
            lambda: (c := get_cluster(http, cluster_id))["status"] == "Ready" and c,
            "Ready after the restart",
            CONVERGE_TIMEOUT,
        )
        fleet = hosts(http)
        listed = http.get(CLUSTERS).json()["clusters"]

    assert [c["cluster_id"] for c in listed] == [cluster_id]
    workers = cluster["gpu_worker_nodes"]
    assert len(workers) == WORKERS
    assert cluster["num_gpus"] == 32
    assert sum(w["num_gpus"] for w in workers) == 32
    assert all(w["status"] == "Running" for w in workers)
    assert len(cluster["control_plane_nodes"]) == len(before["control_plane_nodes"])

    # The restart kept the nodes it had; it did not launch replacements on other hosts.
    assert sorted(w["node_id"] for w in workers) == sorted(
        w["node_id"] for w in before["gpu_worker_nodes"]
    )
    names = [w["host_name"] for w in workers]
    assert len(set(names)) == WORKERS, f"a host serves two nodes: {names}"
    held = sorted(h["name"] for h in fleet if h["cluster_id"] == cluster_id)
    assert held == sorted(names)
    assert all(h["state"] == "allocated" for h in fleet if h["cluster_id"] == cluster_id)
    assert all(h["cluster_id"] is None for h in fleet if h["name"] not in names)

    assert_history_is_clean(cluster["phase_transitions"], "cluster")
    phases = [t["phase"].removeprefix("CLUSTER_PHASE_") for t in cluster["phase_transitions"]]
    assert phases == [p for p in BRING_UP if p in phases]
    assert phases[0] == "QUEUED" and phases[-1] == "READY"
    for node in [*workers, *cluster["control_plane_nodes"]]:
        assert_history_is_clean(node["phase_transitions"], node["node_id"])
        assert node["phase_transitions"][-1]["phase"] == "NODE_PHASE_RUNNING"


def test_a_cluster_whose_server_was_killed_mid_deletion_is_gone_after_a_restart(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    fast = ServerProcess(tmp_path, time_scale=3000, fleet=SMALL_FLEET)
    servers.append(fast.start())
    with fast.client() as http:
        created = http.post(CLUSTERS, json=CREATE)
        assert created.status_code == 200, created.text
        cluster_id = created.json()["cluster_id"]
        wait_for(
            lambda: get_cluster(http, cluster_id)["status"] == "Ready", "Ready", CONVERGE_TIMEOUT
        )
    fast.kill()

    # Slow fleet time: each node takes 1-5 wall seconds to terminate.
    slow = restart(fast, tmp_path, time_scale=30)
    servers.append(slow)
    with slow.client() as http:
        deleted = http.delete(f"{CLUSTERS}/{cluster_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"cluster_id": cluster_id}

        def mid_teardown() -> dict[str, Any] | None:
            cluster = get_cluster(http, cluster_id)
            left = len(cluster["gpu_worker_nodes"])
            return cluster if cluster["status"] == "Deleting" and 0 < left < WORKERS else None

        wait_for(mid_teardown, "some but not all workers terminated", 30)
    slow.kill()

    final = restart(fast, tmp_path, time_scale=3000)
    servers.append(final)
    with final.client() as http:
        gone = wait_for(
            lambda: http.get(f"{CLUSTERS}/{cluster_id}").status_code == 404,
            "the cluster to disappear",
            CONVERGE_TIMEOUT,
        )
        assert gone
        fleet = hosts(http)
        listed = http.get(CLUSTERS).json()["clusters"]

    assert listed == []
    assert [h["name"] for h in fleet if h["cluster_id"] is not None] == []
    test1 = [h for h in fleet if h["region"] == "test-1"]
    assert len(test1) == 16
    assert all(h["state"] == "available" for h in test1)

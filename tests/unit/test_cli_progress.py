"""When following a cluster stops (cli/progress.py `verdict`) and what counts as new."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from clusterplane.cli.displays import LineDisplay
from clusterplane.cli.exits import CliError
from clusterplane.cli.http import Api, ApiError
from clusterplane.cli.progress import MAX_MISSES, changes, current, follow, verdict

T0 = "2026-01-01T00:00:00Z"


def node(node_id: str, *phases: str, gpus: int = 8, **extra: Any) -> dict[str, Any]:
    history = [{"phase": f"NODE_PHASE_{p}", "transition_time": T0} for p in phases]
    return {"node_id": node_id, "host_name": f"h-{node_id}", "num_gpus": gpus,
            "phase_transitions": history, **extra}  # fmt: skip


def cluster(status: str, workers: list[dict[str, Any]], num_gpus: int = 8) -> dict[str, Any]:
    return {
        "cluster_id": "c1",
        "cluster_name": "demo",
        "status": status,
        "num_gpus": num_gpus,
        "allocated_preemptible_gpus": 0,
        "phase_transitions": [{"phase": "CLUSTER_PHASE_READY", "transition_time": T0}],
        "control_plane_nodes": [node("cp-0", "RUNNING", gpus=0)],
        "gpu_worker_nodes": workers,
        "deleted_gpu_worker_nodes": [],
    }


def test_a_ready_cluster_is_settled_only_when_its_workers_run_and_hold_num_gpus():
    assert verdict(cluster("Ready", [node("w0", "RUNNING")])).outcome == "ready"
    booting = [node("w0", "RUNNING"), node("w1", "PENDING", "BOOTING")]
    assert verdict(cluster("Ready", booting, num_gpus=16)) is None, "a new node still boots"
    assert verdict(cluster("Ready", [node("w0", "RUNNING")], num_gpus=16)) is None, "not made"
    leaving = [node("w0", "RUNNING"), node("w1", "RUNNING", marked_for_deletion=True)]
    assert verdict(cluster("Ready", leaving)) is None, "a scale-down is not done while it drains"
    assert verdict(cluster("WaitingForDataPlaneNodes", [node("w0", "RUNNING")])) is None


def test_a_failed_node_or_a_deletion_ends_the_follow_with_exit_5():
    failed = verdict(cluster("WaitingForDataPlaneNodes", [node("w0", "PENDING", "FAILED")]))
    assert failed is not None and failed.code == 5
    assert failed.message == "cluster demo (c1) failed: gpu-worker w0 on h-w0"
    deleting = verdict(cluster("Deleting", [node("w0", "RUNNING")]))
    assert deleting is not None and (deleting.code, deleting.outcome) == (5, "deleting")


def test_following_an_existing_cluster_shows_each_latest_phase_then_only_what_is_new():
    seen_before = cluster("Ready", [node("w0", "PENDING", "RUNNING")])
    seen = current(seen_before)
    assert [(c.node_id, c.phase) for c in changes(seen_before, seen)] == [
        (None, "CLUSTER_PHASE_READY"),
        ("cp-0", "NODE_PHASE_RUNNING"),
        ("w0", "NODE_PHASE_RUNNING"),
    ]
    later = cluster("Ready", [node("w0", "PENDING", "RUNNING"), node("w1", "PENDING")])
    assert [(c.node_id, c.phase) for c in changes(later, seen)] == [("w1", "NODE_PHASE_PENDING")]
    assert changes(later, seen) == []


def scripted_api(answers: list[httpx.Response]) -> Api:
    """An Api whose GETs get `answers` in turn (the cluster must not be asked for more)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    return Api("http://cp.test", "key", transport=httpx.MockTransport(handler))


def test_following_rides_out_a_few_unanswered_polls_but_not_a_refusal():
    start = cluster("WaitingForDataPlaneNodes", [node("w0", "PENDING")])
    ready = cluster("Ready", [node("w0", "PENDING", "RUNNING")])
    answers = [
        httpx.Response(503, json={"error": {"message": "database busy"}}),
        httpx.Response(429, json={"error": {"message": "slow down"}}),
        httpx.Response(200, json=ready),
    ]
    out = io.StringIO()
    code = follow(scripted_api(answers), LineDisplay(out), start, interval=0, timeout=None)
    assert (code, answers) == (0, [])
    assert out.getvalue().splitlines()[-1].startswith("cluster demo (c1) is Ready")

    refused = [httpx.Response(403, json={"error": {"message": "not your cluster"}})]
    with pytest.raises(ApiError, match="not your cluster"):
        follow(scripted_api(refused), LineDisplay(out), start, interval=0, timeout=None)
    down = [httpx.Response(502, text="bad gateway") for _ in range(MAX_MISSES + 1)]
    with pytest.raises(CliError, match="bad gateway") as failed:
        follow(scripted_api(down), LineDisplay(out), start, interval=0, timeout=None)
    assert failed.value.code == 4

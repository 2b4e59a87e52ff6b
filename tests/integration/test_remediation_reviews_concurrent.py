"""Approve, reject and cancel of remediations under concurrent writes: each review is a
write transaction, so none fails on a lock or a snapshot conflict (no 500), and reviews
racing on one remediation decide it exactly once.

Runs on SQLite and PostgreSQL (`CLUSTERPLANE_TEST_DATABASE`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx

from tests.support.engine import Engine

CLUSTERS = "/v1/compute/clusters"
VOLUMES = "/v1/compute/clusters/storage/volumes"


def _cluster(engine: Engine, name: str, num_gpus: int) -> dict[str, Any]:
    body = {
        "cluster_name": name,
        "billing_type": "ON_DEMAND",
        "gpu_type": "H100_SXM",
        "num_gpus": num_gpus,
        "region": "test-1",
        "nvidia_version_id": "cu128-drv570-ubuntu2204",
    }
    response = engine.client.post(CLUSTERS, headers=engine.headers(), json=body)
    assert response.status_code == 200, response.text
    cluster: dict[str, Any] = response.json()
    return cluster


def _remediations_path(cluster_id: str, instance_id: str) -> str:
    return f"{CLUSTERS}/{cluster_id}/instances/{instance_id}/remediations"


def _instances(engine: Engine, count: int) -> list[tuple[str, str]]:
    """(cluster id, instance id) of `count` workers, spread over two clusters."""
    found = []
    for name, gpus in (("reviews-a", 64), ("reviews-b", 32)):
        cluster = _cluster(engine, name, gpus)
        found += [(cluster["cluster_id"], w["instance_id"]) for w in cluster["gpu_worker_nodes"]]
    assert len(found) >= count
    return found[:count]


def _all_at_once(engine: Engine, requests: Sequence[tuple[str, str, Any]]) -> list[httpx.Response]:
    """Every (method, path, json body) request sent concurrently through the ASGI app."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=engine.app.api, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=engine.headers(), timeout=60
        ) as http:
            return await asyncio.gather(
                *(http.request(method, path, json=body) for method, path, body in requests)
            )

    return asyncio.run(run())


def test_concurrent_cancels_beside_other_writes_all_succeed(engine: Engine):
    targets = _instances(engine, 11)
    pending = []
    for cluster_id, instance_id in targets:
        body = {"mode": "REMEDIATION_MODE_REBOOT_VM", "reason": "concurrency"}
        path = _remediations_path(cluster_id, instance_id)
        response = engine.client.post(path, headers=engine.headers(), json=body)
        assert response.status_code == 200, response.text
        pending.append(f"{path}/{response.json()['id']}")

    cancels = [("POST", f"{path}/cancel", None) for path in pending]
    writes = [
        ("POST", VOLUMES, {"volume_name": f"busy-{i}", "size_tib": 1, "region": "test-1"})
        for i in range(11)
    ]
    interleaved = [r for pair in zip(cancels, writes, strict=True) for r in pair]
    responses = _all_at_once(engine, interleaved)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 22}, [r.text for r in responses if r.status_code != 200]
    for path in pending:
        shown = engine.client.get(path, headers=engine.headers()).json()
        assert shown["state"] == "CANCELLED"


def test_racing_reviews_of_one_remediation_decide_it_exactly_once(engine: Engine):
    (cluster_id, instance_id), *_ = _instances(engine, 1)
    recommendation = engine.client.post(
        f"/admin/v1/clusters/{cluster_id}/instances/{instance_id}/recommendations",
        headers=engine.headers(),
        json={"mode": "REMEDIATION_MODE_VM_ONLY", "reason": "xid 79"},
    )
    assert recommendation.status_code == 200, recommendation.text
    path = f"{_remediations_path(cluster_id, instance_id)}/{recommendation.json()['id']}"

    actions = ["approve", "reject"] * 6  # each allowed only while PENDING_APPROVAL
    responses = _all_at_once(engine, [("POST", f"{path}/{a}", {}) for a in actions])

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 400: 11}, [r.text for r in responses]
    for refused in (r for r in responses if r.status_code == 400):
        assert refused.json()["error"]["type"] == "failed_precondition"
    winner = next(r for r in responses if r.status_code == 200).json()
    assert engine.client.get(path, headers=engine.headers()).json()["state"] == winner["state"]

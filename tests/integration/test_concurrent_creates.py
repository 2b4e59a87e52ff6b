"""Many creates at once against a real server: capacity is never handed out twice."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.server import ServerProcess

BODY = {
    "cluster_name": "race",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def test_concurrent_creates_beyond_capacity_succeed_exactly_as_far_as_hosts_go(
    server: ServerProcess,
):
    def create(i: int) -> httpx.Response:
        with server.client() as client:
            return client.post("/v1/compute/clusters", json={**BODY, "cluster_name": f"r{i}"})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(create, range(16)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 8, 409: 8}, statuses
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"]["type"] == "capacity_unavailable"
    with server.client() as client:
        hosts = client.get("/admin/v1/fleet/hosts").json()["hosts"]
        clusters = client.get("/v1/compute/clusters").json()["clusters"]
    owned = Counter(h["cluster_id"] for h in hosts if h["region"] == "test-1")
    created = {r.json()["cluster_id"] for r in responses if r.status_code == 200}
    assert {c["cluster_id"] for c in clusters} == created
    assert set(owned) == created and all(n == 2 for n in owned.values())
    workers = [w["host_name"] for c in clusters for w in c["gpu_worker_nodes"]]
    assert len(workers) == len(set(workers)) == 16

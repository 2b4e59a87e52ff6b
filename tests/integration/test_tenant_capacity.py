"""One project cannot take what every project shares: preemptible GPUs and shared storage
have per-project quotas (by default a share of the region), shown in the quota view.

small.yaml's test-1 has 16 H100 hosts (128 GPUs) and 100 TiB of shared storage, so the
default shares (a quarter) allow 32 preemptible GPUs and 25 TiB per project.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.engine import Engine, new_tenant

CLUSTERS = "/v1/compute/clusters"
VOLUMES = "/v1/compute/clusters/storage/volumes"
CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def quota_error(response: httpx.Response, param: str) -> str:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["type"] == "quota_exceeded" and error["param"] == param
    message: str = error["message"]
    return message


def create(engine: Engine, key: str, **overrides: Any) -> httpx.Response:
    return engine.client.post(CLUSTERS, json={**CREATE, **overrides}, headers=engine.headers(key))


def quota(engine: Engine, project: str, **limits: Any) -> dict[str, Any]:
    path = f"/admin/v1/projects/{project}/quota"
    if limits:
        return ok(engine.client.put(path, json=limits, headers=engine.headers()))
    return ok(engine.client.get(path, headers=engine.headers()))


def volume(engine: Engine, key: str, size: int) -> httpx.Response:
    body = {"volume_name": "data", "size_tib": size, "region": "test-1"}
    return engine.client.post(VOLUMES, json=body, headers=engine.headers(key))


def grow(engine: Engine, key: str, volume_id: str, size: int) -> httpx.Response:
    body = {"volume_id": volume_id, "size_tib": size}
    return engine.client.put(VOLUMES, json=body, headers=engine.headers(key))


def test_preemptible_gpus_count_against_a_quota_of_their_own_shown_in_the_quota_view(
    engine: Engine,
):
    alpha, key_a = new_tenant(engine, "alpha")
    beta, key_b = new_tenant(engine, "beta")
    quota(engine, alpha, max_gpus=16)
    before = engine.dump()
    message = quota_error(create(engine, key_a, num_preemptible_gpus=384), "num_preemptible_gpus")
    assert "32 preemptible GPUs of H100_SXM in test-1" in message and "32 remaining" in message
    assert engine.dump() == before
    holder = ok(create(engine, key_a, num_preemptible_gpus=32))
    engine.advance(3 * 3600, step=60)
    path = f"{CLUSTERS}/{holder['cluster_id']}"
    assert (
        ok(engine.client.get(path, headers=engine.headers(key_a)))["allocated_preemptible_gpus"]
        == 32
    )
    view = quota(engine, alpha)
    assert (view["used_gpus"], view["max_preemptible_gpus"]) == (8, None)
    assert (view["used_preemptible_gpus"], view["allocated_preemptible_gpus"]) == (32, 32)
    raise_target = {"num_preemptible_gpus": 40}
    refused = engine.client.put(path, json=raise_target, headers=engine.headers(key_a))
    assert "40 would exceed it" in quota_error(refused, "num_preemptible_gpus")
    # The second project has a quota of its own, and the first one's ordinary work goes on.
    ok(create(engine, key_b, num_preemptible_gpus=32))
    ok(create(engine, key_a, num_gpus=8))
    # The operator may allow more; the view shows the project's own limit.
    assert quota(engine, alpha, max_preemptible_gpus=64)["max_preemptible_gpus"] == 64
    assert (
        ok(engine.client.put(path, json=raise_target, headers=engine.headers(key_a)))[
            "desired_preemptible_gpus"
        ]
        == 40
    )
    assert quota(engine, beta)["used_preemptible_gpus"] == 32


def test_shared_storage_has_a_per_project_quota_so_one_project_cannot_fill_a_region(
    engine: Engine,
):
    alpha, key_a = new_tenant(engine, "alpha")
    beta, key_b = new_tenant(engine, "beta")
    before = engine.dump()
    message = quota_error(volume(engine, key_a, 100), "size_tib")
    assert "may hold 25 TiB of shared storage in test-1" in message and "holds 0" in message
    assert engine.dump() == before
    first = ok(volume(engine, key_a, 25))
    message = quota_error(grow(engine, key_a, first["volume_id"], 26), "size_tib")
    assert "25 TiB remaining" not in message and "0 TiB remaining" in message
    inline = create(
        engine,
        key_a,
        shared_volume={"volume_name": "d", "size_tib": 1, "region": "test-1"},
    )
    quota_error(inline, "shared_volume.size_tib")
    # The next project still gets its share; the first project's clusters are unaffected.
    assert ok(volume(engine, key_b, 25))["size_tib"] == 25
    ok(create(engine, key_a, volume_id=first["volume_id"]))
    view = quota(engine, alpha)
    assert (view["max_storage_tib"], view["used_storage_tib"]) == (None, 25)
    assert view["default_storage_share"] == 0.25
    # An operator-set limit replaces the default share; past the region it is a 409.
    assert quota(engine, alpha, max_storage_tib=80)["max_storage_tib"] == 80
    assert ok(grow(engine, key_a, first["volume_id"], 75))["size_tib"] == 75
    full = grow(engine, key_a, first["volume_id"], 80)
    assert full.status_code == 409 and full.json()["error"]["type"] == "capacity_unavailable"
    assert quota(engine, beta)["used_storage_tib"] == 25


def test_the_operator_sets_and_clears_each_limit_on_its_own(engine: Engine):
    alpha, _ = new_tenant(engine, "alpha")
    both = quota(engine, alpha, max_gpus=64, max_storage_tib=10)
    assert (both["max_gpus"], both["max_storage_tib"], both["max_preemptible_gpus"]) == (
        64,
        10,
        None,
    )
    cleared = quota(engine, alpha, max_gpus=None)
    assert (cleared["max_gpus"], cleared["max_storage_tib"]) == (None, 10)
    listed = ok(engine.client.get("/admin/v1/quotas", headers=engine.headers()))["quotas"]
    assert [(q["project_id"], q["max_storage_tib"]) for q in listed] == [(alpha, 10)]
    path = f"/admin/v1/projects/{alpha}/quota"
    for body, param in [
        ({"max_storage_tib": -1}, "max_storage_tib"),
        ({"max_preemptible_gpus": "8"}, "max_preemptible_gpus"),
        ({"max_disk": 8}, "max_disk"),
    ]:
        response = engine.client.put(path, json=body, headers=engine.headers())
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param

"""The operator's capacity controls over the admin API: per-project GPU quotas, host
drain / offline / online, the placement policy, and the "no fit" answer users get.

Runs in-process on `small.yaml` (test-1: fabric ib-a = racks r01, r02; fabric ib-b = racks
r03, r04; 4 H100 hosts per rack) on a manual clock.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from clusterplane.app import build
from clusterplane.clock import ManualClock
from clusterplane.services.access.auth import generate_key_text
from clusterplane.settings import PlacementSettings, Settings
from tests.support.databases import fresh_database_url
from tests.support.engine import SMALL_FLEET, Engine, make_engine

CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _error(response: httpx.Response, status: int, error_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-should-retry"] == "false"
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == error_type
    assert isinstance(error["message"], str) and error["message"]
    return error


def _admin_post(engine: Engine, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return _ok(engine.client.post(f"/admin/v1/{path}", headers=engine.headers(), json=body))


def _tenant(engine: Engine, name: str) -> tuple[str, str]:
    """A new project with a member's key: (project id, key)."""
    user = _admin_post(engine, "users", {"name": name})["id"]
    project = _admin_post(engine, "projects", {"name": name, "slug": name})["id"]
    key = _admin_post(engine, "api-keys", {"user_id": user, "project_id": project})["api_key"]
    return project, key


def _create(engine: Engine, key: str | None = None, **overrides: Any) -> httpx.Response:
    return engine.client.post(
        "/v1/compute/clusters", json={**CREATE, **overrides}, headers=engine.headers(key)
    )


def _set_quota(engine: Engine, project: str, max_gpus: int) -> dict[str, Any]:
    return _ok(
        engine.client.put(
            f"/admin/v1/projects/{project}/quota",
            json={"max_gpus": max_gpus},
            headers=engine.headers(),
        )
    )


def _hosts(engine: Engine, **query: Any) -> list[dict[str, Any]]:
    answer = _ok(engine.client.get("/admin/v1/fleet/hosts", params=query, headers=engine.headers()))
    hosts: list[dict[str, Any]] = answer["hosts"]
    return hosts


def _worker_hosts(cluster: dict[str, Any]) -> set[str]:
    return {w["host_name"] for w in cluster["gpu_worker_nodes"]}


# --- quotas -------------------------------------------------------------------------------


def test_a_create_beyond_the_projects_quota_is_refused_and_changes_nothing(engine: Engine):
    project, key = _tenant(engine, "alpha")
    assert (
        _set_quota(engine, project, 24).items()
        >= {
            "project_id": project,
            "max_gpus": 24,
            "used_gpus": 0,
            "remaining_gpus": 24,
        }.items()
    )
    _ok(_create(engine, key, num_gpus=16))
    before = engine.dump()
    error = _error(_create(engine, key, num_gpus=16), 403, "quota_exceeded")
    assert error["param"] == "num_gpus"
    assert "quota of 24 GPUs and uses 16" in error["message"]
    assert "8 remaining" in error["message"]
    assert engine.dump() == before
    _ok(_create(engine, key, num_gpus=8))


def test_a_scale_up_beyond_quota_is_refused_but_scaling_within_it_works(engine: Engine):
    project, key = _tenant(engine, "alpha")
    _set_quota(engine, project, 24)
    cluster_id = _ok(_create(engine, key, num_gpus=16))["cluster_id"]
    engine.advance(3 * 3600, step=60)
    path = f"/v1/compute/clusters/{cluster_id}"
    before = engine.dump()
    _error(
        engine.client.put(path, json={"num_gpus": 32}, headers=engine.headers(key)),
        403,
        "quota_exceeded",
    )
    assert engine.dump() == before
    assert (
        _ok(engine.client.put(path, json={"num_gpus": 24}, headers=engine.headers(key)))["num_gpus"]
        == 24
    )


def test_quotas_belong_to_one_project_and_deleting_a_cluster_gives_its_gpus_back(
    engine: Engine,
):
    alpha, key_a = _tenant(engine, "alpha")
    _beta, key_b = _tenant(engine, "beta")
    _set_quota(engine, alpha, 16)
    first = _ok(_create(engine, key_a))["cluster_id"]
    _error(_create(engine, key_a, num_gpus=8), 403, "quota_exceeded")
    _ok(_create(engine, key_b, num_gpus=16))  # beta has no quota
    _ok(engine.client.delete(f"/v1/compute/clusters/{first}", headers=engine.headers(key_a)))
    quota = _ok(engine.client.get(f"/admin/v1/projects/{alpha}/quota", headers=engine.headers()))
    assert quota["used_gpus"] == 0
    engine.advance(3600, step=60)
    _ok(_create(engine, key_a, num_gpus=16))


def test_quotas_are_listed_and_removed_by_the_operator(engine: Engine):
    alpha, _ = _tenant(engine, "alpha")
    beta, _ = _tenant(engine, "beta")
    _set_quota(engine, alpha, 64)
    _set_quota(engine, beta, 8)
    _set_quota(engine, beta, 16)
    listed = _ok(engine.client.get("/admin/v1/quotas", headers=engine.headers()))["quotas"]
    assert {(q["project_id"], q["max_gpus"]) for q in listed} == {(alpha, 64), (beta, 16)}
    removed = _ok(
        engine.client.delete(f"/admin/v1/projects/{beta}/quota", headers=engine.headers())
    )
    assert removed["max_gpus"] is None and removed["remaining_gpus"] is None
    listed = _ok(engine.client.get("/admin/v1/quotas", headers=engine.headers()))["quotas"]
    assert [q["project_id"] for q in listed] == [alpha]


@pytest.mark.parametrize(
    ("body", "param"),
    [({"max_gpus": -8}, "max_gpus"), ({"max_gpus": "8"}, "max_gpus"), ({}, "max_gpus")],
)
def test_a_bad_quota_is_refused_with_400(engine: Engine, body: dict[str, Any], param: str):
    alpha, _ = _tenant(engine, "alpha")
    before = engine.dump()
    response = engine.client.put(
        f"/admin/v1/projects/{alpha}/quota", json=body, headers=engine.headers()
    )
    assert _error(response, 400, "invalid_request_error")["param"] == param
    assert engine.dump() == before


def test_quota_and_fleet_endpoints_are_for_admin_keys_only(engine: Engine):
    alpha, key = _tenant(engine, "alpha")
    before = engine.dump()
    for method, path in [
        ("GET", "/admin/v1/quotas"),
        ("PUT", f"/admin/v1/projects/{alpha}/quota"),
        ("DELETE", f"/admin/v1/projects/{alpha}/quota"),
        ("GET", "/admin/v1/fleet/hosts"),
        ("POST", "/admin/v1/fleet/hosts/test1-r01-01/drain"),
        ("POST", "/admin/v1/fleet/hosts/test1-r01-01/offline"),
    ]:
        response = engine.client.request(
            method, path, json={"max_gpus": 1000}, headers=engine.headers(key)
        )
        _error(response, 403, "permission_denied")
    assert engine.dump() == before


def test_unknown_projects_and_hosts_are_404(engine: Engine):
    _error(
        engine.client.put(
            "/admin/v1/projects/nope/quota", json={"max_gpus": 8}, headers=engine.headers()
        ),
        404,
        "not_found",
    )
    _error(
        engine.client.post("/admin/v1/fleet/hosts/nope/drain", headers=engine.headers()),
        404,
        "not_found",
    )


# --- host state ---------------------------------------------------------------------------


def test_a_drained_host_is_never_chosen_but_keeps_serving_its_cluster(engine: Engine):
    for name in ("test1-r01-01", "test1-r01-02"):
        host = _admin_post(engine, f"fleet/hosts/{name}/drain")
        assert host["draining"] is True and host["placeable"] is False
    # r01 has 2 placeable hosts left, r02 has 4: a 3-node cluster goes to r02.
    first = _ok(_create(engine, num_gpus=24))
    assert {h[:10] for h in _worker_hosts(first)} == {"test1-r02-"}
    # A 2-node cluster best-fits r01's two undrained hosts; draining it keeps it serving.
    second = _ok(_create(engine, num_gpus=16))
    assert _worker_hosts(second) == {"test1-r01-03", "test1-r01-04"}
    _admin_post(engine, "fleet/hosts/test1-r01-03/drain")
    engine.advance(3 * 3600, step=60)
    served = _hosts(engine, cluster_id=second["cluster_id"])
    assert {h["name"] for h in served} == {"test1-r01-03", "test1-r01-04"}
    # Deleted, its drained host is not handed out again; the undrained one is.
    _ok(
        engine.client.delete(
            f"/v1/compute/clusters/{second['cluster_id']}", headers=engine.headers()
        )
    )
    engine.advance(3600, step=60)
    drained = {h["name"] for h in _hosts(engine, draining=True)}
    assert drained == {"test1-r01-01", "test1-r01-02", "test1-r01-03"}
    assert all(h["cluster_id"] is None for h in _hosts(engine, draining=True))
    placeable = {h["name"] for h in _hosts(engine, region="test-1", placeable=True)}
    assert placeable == {"test1-r01-04", "test1-r02-04"} | {
        f"test1-r0{r}-0{i}" for r in (3, 4) for i in range(1, 5)
    }
    third = _ok(_create(engine, num_gpus=8))
    assert _worker_hosts(third) <= placeable
    _admin_post(engine, "fleet/hosts/test1-r01-01/undrain")
    assert _hosts(engine, draining=True, rack="r01", placeable=False)[0]["name"] == "test1-r01-02"


def test_only_a_host_no_cluster_holds_can_go_offline_and_online_brings_it_back(engine: Engine):
    cluster = _ok(_create(engine, num_gpus=32))
    held = sorted(_worker_hosts(cluster))[0]
    before = engine.dump()
    error = _error(
        engine.client.post(f"/admin/v1/fleet/hosts/{held}/offline", headers=engine.headers()),
        400,
        "failed_precondition",
    )
    assert cluster["cluster_id"] in error["message"]
    assert engine.dump() == before
    free = sorted(h["name"] for h in _hosts(engine, region="test-1", placeable=True))
    for name in free:
        assert _admin_post(engine, f"fleet/hosts/{name}/offline")["state"] == "offline"
    assert {h["name"] for h in _hosts(engine, state="offline")} == set(free)
    refused = _error(_create(engine, num_gpus=8), 409, "capacity_unavailable")
    assert refused["code"] == "insufficient_capacity"
    assert f"not placeable: 4 allocated, {len(free)} offline" in refused["message"]
    assert _admin_post(engine, f"fleet/hosts/{free[0]}/online")["state"] == "available"
    assert _worker_hosts(_ok(_create(engine, num_gpus=8))) == {free[0]}


def test_a_bad_host_filter_is_refused_with_400(engine: Engine):
    response = engine.client.get(
        "/admin/v1/fleet/hosts", params={"state": "broken"}, headers=engine.headers()
    )
    assert _error(response, 400, "invalid_request_error")["param"] == "state"
    response = engine.client.get(
        "/admin/v1/fleet/hosts", params={"draining": "maybe"}, headers=engine.headers()
    )
    _error(response, 400, "invalid_request_error")


# --- placement policy and the "no fit" answer ----------------------------------------------


def test_a_cluster_bigger_than_any_fabric_is_refused_with_the_reason_and_what_is_free(
    engine: Engine,
):
    _admin_post(engine, "fleet/hosts/test1-r04-04/drain")
    before = engine.dump()
    error = _error(_create(engine, num_gpus=80), 409, "capacity_unavailable")
    assert error["code"] == "no_single_fabric_fits"
    assert error["message"] == (
        "need 10 nodes of H100_SXM in test-1: no single fabric has enough free hosts and "
        "crossing fabrics is not allowed; 15 available (largest free rack 4, block 8, "
        "fabric 8); not placeable: 1 draining"
    )
    assert engine.dump() == before


def test_the_fleet_file_can_let_a_cluster_span_fabrics(tmp_path: Path):
    fleet = yaml.safe_load(SMALL_FLEET.read_text())
    fleet["regions"][0]["placement"] = {"allow_cross_fabric": True}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet))
    for engine in make_engine(tmp_path, fleet=path):
        cluster = _ok(_create(engine, num_gpus=80))
        # All of fabric ib-a (the biggest first), the remaining 2 nodes in one rack of ib-b.
        racks = Counter(h[:9] for h in _worker_hosts(cluster))
        assert racks == {"test1-r01": 4, "test1-r02": 4, "test1-r03": 2}
        held = _hosts(engine, cluster_id=cluster["cluster_id"])
        assert {h["fabric"] for h in held} == {"ib-a", "ib-b"}


def test_the_settings_can_let_clusters_span_fabrics_in_every_region(tmp_path: Path):
    key = generate_key_text()
    settings = Settings(
        database_url=fresh_database_url(tmp_path, "policy.db"),
        fleet_file=SMALL_FLEET,
        admin_api_key=key,
        run_controllers=False,
        placement=PlacementSettings(allow_cross_fabric=True),
    )
    app = build(settings, clock=ManualClock())
    with TestClient(app.api) as client:
        response = client.post(
            "/v1/compute/clusters",
            json={**CREATE, "num_gpus": 128},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["gpu_worker_nodes"]) == 16

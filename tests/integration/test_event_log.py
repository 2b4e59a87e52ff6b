"""The audit trail over the API: filters, pages, and who sees which events."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.engine import Engine
from tests.support.tenants import new_tenant

EVENTS = "/v1/clusterplane/events"
CLUSTER = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def ready_cluster(engine: Engine, key: str | None = None) -> dict[str, Any]:
    response = engine.client.post("/v1/compute/clusters", json=CLUSTER, headers=engine.headers(key))
    assert response.status_code == 200, response.text
    engine.advance(3 * 3600, step=60)
    cluster_id = response.json()["cluster_id"]
    cluster = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers(key))
    body: dict[str, Any] = cluster.json()
    assert body["status"] == "Ready"
    return body


def query(engine: Engine, key: str | None = None, **params: Any) -> dict[str, Any]:
    response = engine.client.get(EVENTS, params=params, headers=engine.headers(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def every(engine: Engine, key: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """All pages of a query, following the cursor."""
    found: list[dict[str, Any]] = []
    page = query(engine, key, **params)
    found += page["events"]
    while page["has_more"]:
        page = query(engine, key, **params, cursor=page["next_cursor"])
        found += page["events"]
    return found


def test_a_clusters_events_tell_its_bring_up_in_order(engine: Engine):
    cluster = ready_cluster(engine)
    events = every(engine, cluster_id=cluster["cluster_id"], order="asc")
    assert events[0]["kind"] == "cluster.created"
    phases = [e["message"] for e in events if e["kind"] == "cluster.phase"]
    assert phases[-1].endswith("CLUSTER_PHASE_READY")
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert {e["cluster_id"] for e in events} == {cluster["cluster_id"]}
    assert {e["project_id"] for e in events} == {"proj_default"}
    only_phases = every(engine, cluster_id=cluster["cluster_id"], kind="cluster.phase")
    assert [e["message"] for e in only_phases] == phases[::-1], "newest first by default"


def test_a_nodes_events_are_found_by_its_name_or_instance_id(engine: Engine):
    cluster = ready_cluster(engine)
    worker = cluster["gpu_worker_nodes"][0]
    signal = {"host_name": worker["host_name"], "kind": "xid", "xid_code": 79}
    response = engine.client.post("/admin/v1/health/events", json=signal, headers=engine.headers())
    assert response.status_code == 200, response.text
    by_name = every(engine, node=worker["node_id"])
    kinds = {e["kind"] for e in by_name}
    assert {"health_event.ingested", "node.cordoned"} <= kinds
    assert {e["node_id"] for e in by_name} == {worker["node_id"]}
    assert {e["instance_id"] for e in by_name} == {worker["instance_id"]}
    assert every(engine, node=worker["instance_id"]) == by_name
    other = cluster["gpu_worker_nodes"][1]["node_id"]
    assert every(engine, node=other) == []
    assert every(engine, node="no-such-node") == []


def test_time_ranges_and_kind_patterns_narrow_the_log(engine: Engine):
    cluster = ready_cluster(engine)
    events = every(engine, cluster_id=cluster["cluster_id"], order="asc")
    middle = events[len(events) // 2]["time"]
    before = every(engine, cluster_id=cluster["cluster_id"], until=middle)
    after = every(engine, cluster_id=cluster["cluster_id"], since=middle)
    assert before and after
    assert len(before) + len(after) == len(events)
    assert all(e["time"] < middle for e in before) and all(e["time"] >= middle for e in after)
    wildcard = every(engine, kind="cluster.*")
    assert {e["object_type"] for e in wildcard} == {"cluster"}
    both = every(engine, kind=["cluster.created", "cluster.deleted"])
    assert [e["kind"] for e in both] == ["cluster.created"]
    assert every(engine, kind="cluster.created,cluster.deleted") == both


def test_pages_walk_the_whole_log_once_in_either_order(engine: Engine):
    ready_cluster(engine)
    whole = query(engine, limit=500)["events"]
    assert len(whole) > 7
    paged = every(engine, limit=3)
    assert [e["id"] for e in paged] == [e["id"] for e in whole]
    oldest_first = every(engine, limit=4, order="asc")
    assert [e["id"] for e in oldest_first] == [e["id"] for e in reversed(whole)]
    last = query(engine, limit=500, order="asc")
    assert not last["has_more"] and last["next_cursor"]
    assert query(engine, order="asc", cursor=last["next_cursor"])["events"] == []


def test_a_project_sees_only_its_own_events_and_the_operator_sees_all(engine: Engine):
    alpha, alpha_key = new_tenant(engine, "alpha")
    _, beta_key = new_tenant(engine, "beta")
    cluster = ready_cluster(engine, alpha_key)
    host = next(name for name, owner in engine.host_owners().items() if owner is None)
    signal = {"host_name": host, "kind": "fallen_off_bus"}
    assert engine.client.post(
        "/admin/v1/health/events", json=signal, headers=engine.headers()
    ).is_success
    mine = every(engine, alpha_key)
    assert mine and {e["project_id"] for e in mine} == {alpha}
    assert every(engine, beta_key) == []
    assert every(engine, beta_key, cluster_id=cluster["cluster_id"]) == []
    hidden = engine.client.get(
        EVENTS, params={"project_id": alpha}, headers=engine.headers(beta_key)
    )
    assert hidden.status_code == 404 and hidden.json()["error"]["param"] == "project_id"
    everything = every(engine)
    assert {e["id"] for e in mine} < {e["id"] for e in everything}
    quarantined = [e for e in everything if e["kind"] == "host.quarantined"]
    assert len(quarantined) == 1 and quarantined[0]["project_id"] is None
    assert every(engine, project_id=alpha) == mine


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"kind": "cluster.bogus"}, "kind"),
        ({"kind": "clusters"}, "kind"),
        ({"since": "yesterday"}, "since"),
        ({"until": "1700000000"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"order": "sideways"}, "order"),
        ({"cluster_id": ""}, "cluster_id"),
    ],
)
def test_bad_filters_are_a_400_naming_the_parameter(
    engine: Engine, params: dict[str, str], param: str
):
    response = engine.client.get(EVENTS, params=params, headers=engine.headers())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert response.headers["x-should-retry"] == "false"


def test_the_log_needs_an_api_key(engine: Engine):
    response = engine.client.get(EVENTS)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"

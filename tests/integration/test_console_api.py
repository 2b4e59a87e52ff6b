"""What the web console reads beyond the wire API: its page and files, the inbox, a
cluster's timeline, the fleet, and the live stream with its bounds. Scoped like the wire
API: a tenant sees its own project only, the fleet is for admin keys."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clusterplane.db.engine import read_transaction
from clusterplane.services.access.auth import Caller, authenticate
from clusterplane.services.events import console_feed
from tests.integration.test_bad_input import assert_error
from tests.integration.test_lifecycle import create
from tests.support.engine import Engine, new_tenant
from tests.support.server import SMALL_FLEET, ServerProcess


def get(engine: Engine, path: str, key: str | None = None) -> dict[str, Any]:
    response = engine.client.get(path, headers=engine.headers(key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def propose_repair(engine: Engine, cluster: dict[str, Any]) -> dict[str, Any]:
    """An automated repair proposal (PENDING_APPROVAL) for the cluster's first worker."""
    worker = cluster["gpu_worker_nodes"][0]
    response = engine.client.post(
        f"/admin/v1/clusters/{cluster['cluster_id']}/instances/{worker['instance_id']}"
        "/recommendations",
        json={"mode": "REMEDIATION_MODE_REBOOT_VM", "reason": "test"},
        headers=engine.headers(),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ready(engine: Engine, **overrides: Any) -> dict[str, Any]:
    cluster_id = create(engine, **overrides)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    return get(engine, f"/v1/compute/clusters/{cluster_id}")


def test_the_page_and_its_files_are_served_with_a_policy_that_forbids_inline_script(
    engine: Engine,
):
    page = engine.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert '<script type="module" src="/console/static/app.js">' in page.text
    script = engine.client.get("/console/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    for missing in ("/console/static/nothing.js", "/console/static/..%2F__init__.py"):
        assert_error(engine.client.get(missing), 404, secrets=[engine.admin_key])


def test_the_inbox_lists_the_keys_project_only_with_approvals_first(engine: Engine):
    cluster = ready(engine, num_gpus=24)
    proposal = propose_repair(engine, cluster)
    _, tenant_key = new_tenant(engine, "other")

    [listed] = get(engine, "/console/v1/remediations")["remediations"]
    assert listed["id"] == proposal["id"] and listed["state"] == "PENDING_APPROVAL"
    assert listed["cluster_name"] == cluster["cluster_name"]
    assert get(engine, "/console/v1/remediations", tenant_key)["remediations"] == []


def test_a_timeline_has_the_clusters_audit_events_and_node_health_for_its_project_only(
    engine: Engine,
):
    cluster = ready(engine)
    cid = cluster["cluster_id"]
    _, tenant_key = new_tenant(engine, "nosy")

    timeline = get(engine, f"/console/v1/clusters/{cid}/timeline")
    kinds = [(e["object_type"], e["kind"]) for e in timeline["events"]]
    assert kinds[0] == ("cluster", "created") and ("cluster", "phase") in kinds
    nodes = cluster["control_plane_nodes"] + cluster["gpu_worker_nodes"]
    assert timeline["node_health"] == {n["node_id"]: "healthy" for n in nodes}
    response = engine.client.get(
        f"/console/v1/clusters/{cid}/timeline", headers=engine.headers(tenant_key)
    )
    assert_error(response, 404, secrets=[engine.admin_key, tenant_key])


def test_the_fleet_with_health_and_utilisation_is_for_admin_keys_only(engine: Engine):
    ready(engine)
    _, tenant_key = new_tenant(engine, "tenant")

    fleet = get(engine, "/console/v1/fleet")
    assert len(fleet["hosts"]) == 20
    assert {h["health"] for h in fleet["hosts"]} == {"healthy"}
    h100 = next(u for u in fleet["utilisation"] if u["gpu_type"] == "H100_SXM")
    assert (h100["gpus"], h100["allocated_gpus"]) == (128, 16)
    assert h100["hosts_by_state"] == {"allocated": 2, "available": 14}
    refused = engine.client.get("/console/v1/fleet", headers=engine.headers(tenant_key))
    assert_error(refused, 403, secrets=[tenant_key])
    me = get(engine, "/console/v1/me", tenant_key)
    assert me["is_admin"] is False and me["project"]["name"] == "tenant"


def _snapshot(engine: Engine, caller: Caller, previous: Any = None) -> Any:
    with read_transaction(engine.app.sessions) as session:
        return console_feed.read_snapshot(session, caller, previous)


def _caller(engine: Engine, key: str | None = None) -> Caller:
    lookup_keys = engine.app.api.state.cp.secrets.lookup_keys
    with read_transaction(engine.app.sessions) as session:
        return authenticate(
            session, key or engine.admin_key, lookup_keys=lookup_keys, now=engine.wall_clock.now()
        )


def test_a_snapshot_names_the_clusters_that_changed_for_its_project_only(engine: Engine):
    _, tenant_key = new_tenant(engine, "bystander")
    admin, tenant = _caller(engine), _caller(engine, tenant_key)
    before, tenant_before = _snapshot(engine, admin), _snapshot(engine, tenant)

    cluster_id = create(engine)["cluster_id"]
    created = _snapshot(engine, admin, before)
    assert console_feed.changes(before, created).clusters == [cluster_id]
    assert not console_feed.changes(created, _snapshot(engine, admin, created))
    engine.advance(600, step=60)  # node phases move
    moved = _snapshot(engine, admin, created)
    assert console_feed.changes(created, moved).clusters == [cluster_id]
    assert moved.fleet is not None and tenant_before.fleet is None  # the fleet: admins only
    assert not console_feed.changes(tenant_before, _snapshot(engine, tenant, tenant_before))

    engine.advance(3 * 3600, step=60)
    settled = _snapshot(engine, admin)
    propose_repair(engine, get(engine, f"/v1/compute/clusters/{cluster_id}"))
    proposed = console_feed.changes(settled, _snapshot(engine, admin, settled))
    assert proposed.remediations and proposed.clusters == [cluster_id]
    engine.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    engine.advance(3600, step=60)
    gone = _snapshot(engine, admin)
    assert console_feed.changes(settled, gone).removed == [cluster_id]


class Events:
    """The events of one open console stream, read as they come."""

    def __init__(self, response: httpx.Response):
        self.lines = response.iter_lines()

    def next(self, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        current = None
        for line in self.lines:
            if line.startswith("event: "):
                current = line.removeprefix("event: ")
            elif line.startswith("data: ") and current == kind:
                data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return data
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"no {kind} event within {timeout} s")


@pytest.fixture
def streaming(tmp_path: Path) -> Iterator[ServerProcess]:
    args = ("--config", str(tmp_path / "console.toml"))
    (tmp_path / "console.toml").write_text(
        "[console]\nstream_poll_seconds = 0.2\nstream_heartbeat_seconds = 1\n"
        "max_streams_per_key = 2\n"
    )
    with ServerProcess(tmp_path, fleet=SMALL_FLEET, extra_args=args) as proc:
        yield proc


def test_a_stream_pushes_what_changed_and_ends_when_its_key_is_revoked(
    streaming: ServerProcess,
):
    with streaming.client() as admin:
        made = admin.post("/admin/v1/users", json={"name": "u"}).json()["id"]
        issued = admin.post(
            "/admin/v1/api-keys", json={"user_id": made, "project_id": "proj_default"}
        ).json()
        with (
            streaming.client(issued["api_key"]) as tenant,
            tenant.stream("GET", "/console/v1/stream", timeout=30) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            events = Events(response)
            assert "now" in events.next("hello")
            created = tenant.post(
                "/v1/compute/clusters",
                json={"cluster_name": "live", "billing_type": "ON_DEMAND", "gpu_type": "H100_SXM",
                      "num_gpus": 8, "region": "test-1",
                      "nvidia_version_id": "cu128-drv570-ubuntu2204"},
            )  # fmt: skip
            assert created.status_code == 200, created.text
            change = events.next("change")
            assert change["clusters"] == [created.json()["cluster_id"]]
            assert change["fleet"] is False  # not an admin key
            admin.post(f"/admin/v1/api-keys/{issued['id']}/revoke")
            assert events.next("end")["reason"] == "the API key was revoked"


def test_a_key_has_at_most_its_number_of_streams_open(streaming: ServerProcess):
    with streaming.client() as client:
        made = client.post("/admin/v1/users", json={"name": "u"}).json()["id"]
        key = client.post(
            "/admin/v1/api-keys", json={"user_id": made, "project_id": "proj_default"}
        ).json()["api_key"]
    with (
        streaming.client(key) as tenant,
        tenant.stream("GET", "/console/v1/stream") as first,
        tenant.stream("GET", "/console/v1/stream") as second,
    ):
        held = [Events(first), Events(second)]  # each holds its connection open
        for events in held:
            events.next("hello")
        third = tenant.get("/console/v1/stream")
        assert third.status_code == 429
        assert "at most 2" in third.json()["error"]["message"]
        assert int(third.headers["retry-after"]) >= 1
    deadline = time.monotonic() + 10
    with streaming.client(key) as tenant:  # closed streams give their slots back
        while True:
            with tenant.stream("GET", "/console/v1/stream") as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the closed streams kept their slots"
            time.sleep(0.2)


def test_a_stream_ends_after_its_longest_lifetime(tmp_path: Path):
    config = tmp_path / "console.toml"
    config.write_text("[console]\nstream_poll_seconds = 0.2\nstream_max_seconds = 1\n")
    with (
        ServerProcess(tmp_path, fleet=SMALL_FLEET, extra_args=("--config", str(config))) as proc,
        proc.client() as client,
        client.stream("GET", "/console/v1/stream") as response,
    ):
        events = Events(response)
        events.next("hello")
        assert "longest lifetime" in events.next("end", timeout=10)["reason"]

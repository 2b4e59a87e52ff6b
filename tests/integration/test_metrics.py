"""`GET /metrics`: Prometheus series that move as clusters are created, repaired and deleted,
readable only by the operator, with labels no client can multiply."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import ClusterRow
from clusterplane.settings import MetricsSettings
from tests.integration.test_health_remediation import (
    act,
    inject,
    ready_cluster,
    remediations_of,
    run_to_end,
)
from tests.integration.test_lifecycle import CREATE, create, get
from tests.support.engine import Engine, make_engine
from tests.support.metrics import Scrape, moved, parse
from tests.support.server import SMALL_FLEET, ServerProcess
from tests.support.tenants import new_tenant

SCRAPE_TOKEN = "scrape-only-token-for-the-metrics-tests"
K8S = {"cluster_type": "KUBERNETES"}
H100 = {"region": "test-1", "gpu_type": "H100_SXM"}
MOVE = "REMEDIATION_MODE_HOST_AWARE"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """Database figures read afresh on every scrape; a scrape-only token configured."""
    yield from make_engine(tmp_path, metrics=MetricsSettings(cache_seconds=0, token=SCRAPE_TOKEN))


def scrape(engine: Engine) -> Scrape:
    response = engine.client.get("/metrics", headers=engine.headers())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_creating_a_cluster_counts_the_request_the_create_and_the_time_to_ready(engine: Engine):
    before = scrape(engine)
    cluster_id = create(engine, num_gpus=24)["cluster_id"]
    queued = scrape(engine)
    assert moved(before, queued, "clusterplane_clusters_created_total", **K8S) == 1
    route = {"route": "/v1/compute/clusters", "method": "POST"}
    assert moved(before, queued, "clusterplane_http_requests_total", **route, status="200") == 1
    assert moved(before, queued, "clusterplane_http_request_duration_seconds_count", **route) == 1
    assert queued.value("clusterplane_controller_due_rows", controller="clusters") == 1
    waiting = {"status": "WaitingForControlPlaneNodes", **K8S}
    assert queued.value("clusterplane_clusters", **waiting) == 1

    engine.advance(3 * 3600, step=60)
    assert get(engine, cluster_id)["status"] == "Ready"
    ready = scrape(engine)
    took = "clusterplane_cluster_ready_duration_seconds"
    assert moved(queued, ready, f"{took}_count", **K8S) == 1
    assert 0 < moved(queued, ready, f"{took}_sum", **K8S) <= 3 * 3600
    assert moved(queued, ready, f"{took}_bucket", **K8S, le="60.0") == 0
    assert moved(queued, ready, f"{took}_bucket", **K8S, le="14400.0") == 1
    assert ready.value("clusterplane_clusters", status="Ready", **K8S) == 1
    assert ready.value("clusterplane_clusters", **waiting) == 0
    assert ready.value("clusterplane_gpus", **H100, state="allocated") == 24
    assert ready.value("clusterplane_hosts", **H100, state="allocated") == 3
    passes = "clusterplane_controller_pass_duration_seconds_count"
    assert moved(queued, ready, passes, controller="clusters") > 0
    rows = "clusterplane_controller_rows_total"
    assert moved(queued, ready, rows, controller="clusters", outcome="done") > 0
    assert ready.value(rows, controller="clusters", outcome="error") == 0
    assert ready.value("clusterplane_controller_due_rows", controller="clusters") == 0
    assert ready.total("clusterplane_controller_lease_takeovers_total") == 0


def test_a_repair_counts_its_health_event_and_every_state_it_enters(engine: Engine):
    cluster = ready_cluster(engine)
    cluster_id = cluster["cluster_id"]
    before = scrape(engine)
    inject(engine, cluster["gpu_worker_nodes"][0]["host_name"], kind="xid", xid_code=79)
    engine.advance(2, step=1)
    [proposal] = remediations_of(engine, cluster_id)
    flagged = scrape(engine)
    xid = {"kind": "xid", "severity": "PHC_SEVERITY_CRITICAL"}
    assert moved(before, flagged, "clusterplane_health_events_total", **xid) == 1
    assert flagged.value("clusterplane_health_events_open", **xid) == 1
    waiting = {"mode": MOVE, "state": "PENDING_APPROVAL"}
    assert moved(before, flagged, "clusterplane_remediation_transitions_total", **waiting) == 1
    assert flagged.value("clusterplane_remediations_open", **waiting) == 1
    assert flagged.value("clusterplane_clusters", status="Degraded", **K8S) == 1

    assert act(engine, cluster_id, proposal["id"], "approve").status_code == 200
    assert run_to_end(engine, cluster_id, proposal["id"]) == "SUCCEEDED"
    repaired = scrape(engine)
    transitions = "clusterplane_remediation_transitions_total"
    for state in ("PENDING", "QUARANTINING", "QUARANTINED", "RUNNING", "SUCCEEDED"):
        assert moved(flagged, repaired, transitions, mode=MOVE, state=state) == 1, state
    assert repaired.total("clusterplane_remediations_open") == 0
    assert repaired.value("clusterplane_hosts", **H100, state="quarantined") == 1
    rows = "clusterplane_controller_rows_total"
    assert moved(flagged, repaired, rows, controller="remediations", outcome="done") > 0


def test_deleting_a_cluster_counts_the_teardown_and_frees_the_gpus_in_the_gauges(engine: Engine):
    cluster_id = ready_cluster(engine)["cluster_id"]
    before = scrape(engine)
    response = engine.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert response.status_code == 200, response.text
    engine.advance(3600, step=60)
    after = scrape(engine)
    assert moved(before, after, "clusterplane_clusters_deleted_total", **K8S) == 1
    route = {"route": "/v1/compute/clusters/{cluster_id}", "method": "DELETE", "status": "200"}
    assert moved(before, after, "clusterplane_http_requests_total", **route) == 1
    assert after.total("clusterplane_clusters") == 0
    assert after.value("clusterplane_gpus", **H100, state="allocated") == 0
    assert after.total("clusterplane_gpus", **H100) == before.total("clusterplane_gpus", **H100)
    assert after.total("clusterplane_controller_lease_takeovers_total") == 0


def test_a_create_the_fleet_cannot_hold_counts_its_409_but_no_cluster(engine: Engine):
    before = scrape(engine)
    response = engine.client.post(
        "/v1/compute/clusters", json={**CREATE, "num_gpus": 1024}, headers=engine.headers()
    )
    assert response.status_code == 409, response.text
    after = scrape(engine)
    assert moved(before, after, "clusterplane_clusters_created_total", **K8S) == 0
    assert after.total("clusterplane_clusters") == 0
    refused = {"route": "/v1/compute/clusters", "method": "POST", "status": "409"}
    assert moved(before, after, "clusterplane_http_requests_total", **refused) == 1


def test_requests_are_labelled_by_route_template_so_random_paths_add_no_series(engine: Engine):
    before = scrape(engine)
    for n in range(5):
        engine.client.get(f"/v1/compute/clusters/no-such-{n}", headers=engine.headers())
        engine.client.get(f"/random-{n}/path", headers=engine.headers())
        engine.client.request(f"BREW{n}", "/v1/compute/clusters", headers=engine.headers())
    after = scrape(engine)
    one = {"route": "/v1/compute/clusters/{cluster_id}", "method": "GET", "status": "404"}
    assert moved(before, after, "clusterplane_http_requests_total", **one) == 5
    unknown = {"route": "unmatched", "method": "GET", "status": "404"}
    assert moved(before, after, "clusterplane_http_requests_total", **unknown) == 5
    odd = {"route": "/v1/compute/clusters", "method": "other", "status": "405"}
    assert moved(before, after, "clusterplane_http_requests_total", **odd) == 5
    seen = after.label_values("route") | after.label_values("method")
    assert not [value for value in seen if "no-such" in value or "random" in value]
    assert not [value for value in seen if "BREW" in value]


def test_a_lease_left_by_a_dead_worker_is_counted_as_taken_over(engine: Engine):
    create(engine)
    lapsed = engine.wall_clock.now() - timedelta(seconds=60)
    with transaction(engine.app.sessions) as session:
        [_] = leases.claim_due(
            session,
            ClusterRow,
            fleet_now=engine.clock.now(),
            wall=lapsed,
            limit=10,
            owner="dead-replica",
            seconds=15,
        )
    before = scrape(engine)
    engine.app.manager.run_once()
    after = scrape(engine)
    taken = "clusterplane_controller_lease_takeovers_total"
    assert moved(before, after, taken, controller="clusters") == 1
    engine.app.manager.run_once()
    assert moved(after, scrape(engine), taken, controller="clusters") == 0


def test_metrics_need_an_admin_key_or_the_scrape_token_and_refuse_tenant_keys(engine: Engine):
    _, tenant_key = new_tenant(engine, "metrics-tenant")
    anonymous = engine.client.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    tenant = engine.client.get("/metrics", headers=engine.headers(tenant_key))
    assert tenant.status_code == 403
    assert tenant.json()["error"]["type"] == "permission_denied"
    wrong = engine.client.get("/metrics", headers=engine.headers(SCRAPE_TOKEN + "x"))
    assert wrong.status_code == 401
    token = engine.client.get("/metrics", headers=engine.headers(SCRAPE_TOKEN))
    assert token.status_code == 200 and "clusterplane_clusters" in token.text
    elsewhere = engine.client.get("/v1/compute/clusters", headers=engine.headers(SCRAPE_TOKEN))
    assert elsewhere.status_code == 401, "the token reads /metrics and nothing else"
    openapi = engine.client.get("/openapi.json", headers=engine.headers()).json()
    assert "/metrics" not in openapi["paths"]


def test_metrics_can_be_opened_to_anyone_or_turned_off(tmp_path: Path):
    open_metrics = MetricsSettings(require_key=False)
    for engine in make_engine(tmp_path / "open", metrics=open_metrics):
        assert engine.client.get("/metrics").status_code == 200
    for engine in make_engine(tmp_path / "off", metrics=MetricsSettings(enabled=False)):
        assert engine.client.get("/metrics", headers=engine.headers()).status_code == 404


def test_the_database_pool_reports_its_connections_and_its_bound(engine: Engine):
    scraped = scrape(engine)
    assert scraped.total("clusterplane_db_pool_connections") >= 1
    assert scraped.value("clusterplane_db_pool_max_connections") >= 15
    assert scraped.value("clusterplane_database_up") == 1


def test_a_served_process_answers_prometheus_with_the_token_from_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CLUSTERPLANE_METRICS__TOKEN", SCRAPE_TOKEN)
    with ServerProcess(tmp_path, fleet=SMALL_FLEET) as server, server.client(SCRAPE_TOKEN) as http:
        assert http.get("/v1/compute/regions").status_code == 401, "the token is for /metrics only"
        first = parse(http.get("/metrics").text)
        second = parse(http.get("/metrics").text)
    probe = {"route": "/metrics", "method": "GET", "status": "200"}
    assert moved(first, second, "clusterplane_http_requests_total", **probe) == 1
    refused = {"route": "/v1/compute/regions", "method": "GET", "status": "401"}
    assert second.value("clusterplane_http_requests_total", **refused) == 1
    assert second.value("clusterplane_hosts", **H100, state="available") == 16
    assert second.value("process_resident_memory_bytes") > 0

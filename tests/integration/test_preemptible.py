"""Preemptible GPUs on a manual clock: fulfilment from idle hosts, reclamation with a
drain window when standard demand needs the hosts, and scale-down of the target."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clusterplane.app import build
from clusterplane.clock import ManualClock, utc
from clusterplane.services.access.auth import generate_key_text
from clusterplane.settings import EngineSettings, Settings
from tests.support.databases import fresh_database_url
from tests.support.engine import SMALL_FLEET, WHOLE_REGION, Engine, make_engine

CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
DRAIN = timedelta(minutes=5)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """One project may use the whole region here: these tests are about the region's own
    limits, not the per-project quotas (tests/integration/test_tenant_capacity.py)."""
    yield from make_engine(tmp_path, capacity=WHOLE_REGION)


def create(engine: Engine, **overrides: Any) -> dict[str, Any]:
    response = engine.client.post(
        "/v1/compute/clusters", json={**CREATE, **overrides}, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def get(engine: Engine, cluster_id: str) -> dict[str, Any]:
    response = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def preemptible(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return [w for w in cluster["gpu_worker_nodes"] if "gpu-preemptible-dp" in w["node_id"]]


def reasons(cluster: dict[str, Any], reason: str) -> list[str]:
    return [e["node_id"] for e in cluster["node_lifecycle_events"] if e["reason"] == reason]


def when(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def free_hosts(engine: Engine) -> int:
    return sum(
        owner is None and name.startswith("test1") for name, owner in engine.host_owners().items()
    )


def test_preemptible_gpus_are_fulfilled_from_idle_hosts_and_reported(engine: Engine):
    cluster = create(engine, num_preemptible_gpus=32)
    assert cluster["desired_preemptible_gpus"] == 32
    assert cluster["allocated_preemptible_gpus"] == 0
    engine.advance(3 * 3600, step=60)
    cluster = get(engine, cluster["cluster_id"])
    assert cluster["status"] == "Ready"
    assert cluster["num_gpus"] == 16 and cluster["allocated_preemptible_gpus"] == 32
    nodes = preemptible(cluster)
    assert len(nodes) == 4 and all(n["status"] == "Running" for n in nodes)
    assert sorted(reasons(cluster, "TogetherScaledUp")) == sorted(n["node_id"] for n in nodes)


def test_preemptible_fulfilment_stops_at_the_idle_hosts_and_never_takes_booked_ones(
    engine: Engine,
):
    cluster = create(engine, num_preemptible_gpus=128)
    engine.advance(3 * 3600, step=60)
    cluster = get(engine, cluster["cluster_id"])
    assert cluster["desired_preemptible_gpus"] == 128
    assert cluster["allocated_preemptible_gpus"] == 14 * 8, "every idle host, no more"
    assert free_hosts(engine) == 0


def test_standard_demand_preempts_preemptible_nodes_after_their_drain_window(engine: Engine):
    holder = create(engine, num_preemptible_gpus=112)
    engine.advance(3 * 3600, step=60)
    assert get(engine, holder["cluster_id"])["allocated_preemptible_gpus"] == 112
    newcomer = create(engine, num_gpus=32)
    assert newcomer["gpu_worker_nodes"] == [], "its hosts are still draining"
    noticed = get(engine, holder["cluster_id"])
    leaving = [n for n in preemptible(noticed) if n["marked_for_deletion"]]
    assert len(leaving) >= 4
    assert set(reasons(noticed, "TogetherPreemptionNotified")) == {n["node_id"] for n in leaving}
    engine.advance(DRAIN.total_seconds() - 30, step=10)
    draining = get(engine, holder["cluster_id"])
    assert {n["node_id"] for n in preemptible(draining) if n["marked_for_deletion"]} == {
        n["node_id"] for n in leaving
    }, "a preempted node keeps serving through its drain window"
    assert reasons(draining, "TogetherPreempted") == []
    engine.advance(3 * 3600, step=30)
    after = get(engine, holder["cluster_id"])
    deleted = {n["node_id"] for n in after["deleted_gpu_worker_nodes"]}
    assert {n["node_id"] for n in leaving} <= deleted
    assert set(reasons(after, "TogetherPreempted")) == {n["node_id"] for n in leaving}
    assert after["desired_preemptible_gpus"] == 112
    assert after["allocated_preemptible_gpus"] == 8 * len(preemptible(after)) <= 80
    ready = get(engine, newcomer["cluster_id"])
    assert ready["status"] == "Ready" and len(ready["gpu_worker_nodes"]) == 4
    first_phase = min(
        when(p["transition_time"])
        for w in ready["gpu_worker_nodes"]
        for p in w["phase_transitions"]
    )
    preempted_at = min(
        when(e["timestamp"])
        for e in after["node_lifecycle_events"]
        if e["reason"] == "TogetherPreemptionNotified"
    )
    assert first_phase >= preempted_at + DRAIN


def test_a_scheduled_start_reclaims_preemptible_hosts_so_the_window_opens_on_time(
    engine: Engine,
):
    holder = create(engine, num_gpus=8, num_preemptible_gpus=128)
    now = engine.clock.now()
    start, end = now + timedelta(hours=4), now + timedelta(hours=10)
    booked = create(
        engine,
        billing_type="SCHEDULED_CAPACITY",
        num_gpus=64,
        reservation_start_time=start.isoformat(),
        reservation_end_time=end.isoformat(),
    )
    engine.advance(3 * 3600, step=60)
    assert get(engine, holder["cluster_id"])["allocated_preemptible_gpus"] == 15 * 8
    engine.advance(3600 + 2 * 3600, step=30)
    started = get(engine, booked["cluster_id"])
    assert started["status"] == "Ready" and len(started["gpu_worker_nodes"]) == 8
    queued = when(started["phase_transitions"][1]["transition_time"])
    assert queued == start
    joined = min(
        when(w["phase_transitions"][0]["transition_time"]) for w in started["gpu_worker_nodes"]
    )
    assert joined - start <= timedelta(seconds=30), "hosts were free when the window opened"
    holder_now = get(engine, holder["cluster_id"])
    assert len(reasons(holder_now, "TogetherPreempted")) >= 7


def test_lowering_the_preemptible_target_scales_preemptible_nodes_down(engine: Engine):
    cluster = create(engine, num_preemptible_gpus=32)
    engine.advance(3 * 3600, step=60)
    response = engine.client.put(
        f"/v1/compute/clusters/{cluster['cluster_id']}",
        json={"num_preemptible_gpus": 8},
        headers=engine.headers(),
    )
    assert response.status_code == 200 and response.json()["desired_preemptible_gpus"] == 8
    engine.advance(1800, step=20)
    after = get(engine, cluster["cluster_id"])
    assert after["allocated_preemptible_gpus"] == 8 and len(preemptible(after)) == 1
    assert len(reasons(after, "TogetherScaledDown")) == 3
    assert len(after["gpu_worker_nodes"]) == 3, "standard nodes are untouched"


def test_the_drain_window_is_an_engine_setting(tmp_path: Path):
    key = generate_key_text()
    settings = Settings(
        database_url=fresh_database_url(tmp_path, "drain.db"),
        fleet_file=SMALL_FLEET,
        admin_api_key=key,
        run_controllers=False,
        engine=EngineSettings(preemption_drain_seconds=60),
        capacity=WHOLE_REGION,
    )
    clock = ManualClock()
    app = build(settings, clock=clock)
    with TestClient(app.api) as client:
        engine = Engine(app=app, clock=clock, client=client, admin_key=key, database_url="")
        holder = create(engine, num_preemptible_gpus=112)
        engine.advance(3 * 3600, step=60)
        create(engine, num_gpus=32)
        notice = get(engine, holder["cluster_id"])["node_lifecycle_events"]
        noticed = [e for e in notice if e["reason"] == "TogetherPreemptionNotified"]
        engine.advance(600, step=10)
        preempted = [
            e
            for e in get(engine, holder["cluster_id"])["node_lifecycle_events"]
            if e["reason"] == "TogetherPreempted"
        ]
        assert noticed and len(preempted) == len(noticed)
        gap = when(preempted[0]["timestamp"]) - when(noticed[0]["timestamp"])
        assert timedelta(seconds=60) <= gap < DRAIN

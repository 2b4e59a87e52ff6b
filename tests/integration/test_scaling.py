"""Scaling against the calendar: which nodes a scale-down removes, and scale-ups that
are booked before they are claimed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.support.engine import Engine

CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 32,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def create(engine: Engine, **overrides: Any) -> dict[str, Any]:
    response = engine.client.post(
        "/v1/compute/clusters", json={**CREATE, **overrides}, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def scale(engine: Engine, cluster_id: str, **body: Any) -> Any:
    return engine.client.put(
        f"/v1/compute/clusters/{cluster_id}", json=body, headers=engine.headers()
    )


def test_a_scale_down_counts_nodes_already_draining_first_then_takes_the_newest(
    engine: Engine,
):
    cluster_id = create(engine)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    first = scale(engine, cluster_id, num_gpus=24).json()
    (draining,) = [w["node_id"] for w in first["gpu_worker_nodes"] if w["marked_for_deletion"]]
    assert draining.endswith("-3")
    second = scale(engine, cluster_id, num_gpus=16).json()
    marked = sorted(w["node_id"] for w in second["gpu_worker_nodes"] if w["marked_for_deletion"])
    assert [m[-2:] for m in marked] == ["-2", "-3"], "one more, the newest that stays"
    engine.advance(1800, step=20)
    after = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers()).json()
    assert sorted(w["node_id"] for w in after["deleted_gpu_worker_nodes"]) == marked
    assert len(after["gpu_worker_nodes"]) == 2
    assert [e["reason"] for e in after["node_lifecycle_events"]] == ["TogetherScaledDown"] * 2


def test_scaling_a_scheduled_cluster_before_its_start_moves_only_its_booking(engine: Engine):
    now = engine.clock.now()
    cluster = create(
        engine,
        billing_type="SCHEDULED_CAPACITY",
        num_gpus=16,
        reservation_start_time=(now + timedelta(hours=2)).isoformat(),
        reservation_end_time=(now + timedelta(hours=6)).isoformat(),
    )
    create(engine, num_gpus=64)
    create(engine, num_gpus=16)
    before = engine.dump()
    too_big = scale(engine, cluster["cluster_id"], num_gpus=56)
    assert too_big.status_code == 409 and engine.dump() == before
    assert "already booked" in too_big.json()["error"]["message"]
    grown = scale(engine, cluster["cluster_id"], num_gpus=48)
    assert grown.status_code == 200 and grown.json()["gpu_worker_nodes"] == []
    owners = engine.host_owners()
    assert cluster["cluster_id"] not in owners.values()
    engine.advance(5 * 3600, step=60)
    started = engine.client.get(
        f"/v1/compute/clusters/{cluster['cluster_id']}", headers=engine.headers()
    ).json()
    assert started["status"] == "Ready" and len(started["gpu_worker_nodes"]) == 6

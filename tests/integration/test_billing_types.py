"""Each billing type's whole life on a manual clock, against the capacity calendar.

The small fleet's region test-1 has 16 H100 hosts (two fabrics of 8): bookings count
against those 16 over their windows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from clusterplane.clock import utc
from tests.support.engine import Engine

CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def post(engine: Engine, **overrides: Any) -> Any:
    return engine.client.post(
        "/v1/compute/clusters", json={**CREATE, **overrides}, headers=engine.headers()
    )


def create(engine: Engine, **overrides: Any) -> dict[str, Any]:
    response = post(engine, **overrides)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def get(engine: Engine, cluster_id: str) -> dict[str, Any]:
    response = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def gone(engine: Engine, cluster_id: str) -> bool:
    url = f"/v1/compute/clusters/{cluster_id}"
    return engine.client.get(url, headers=engine.headers()).status_code == 404


def phases(cluster: dict[str, Any]) -> list[str]:
    return [p["phase"].removeprefix("CLUSTER_PHASE_") for p in cluster["phase_transitions"]]


def when(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def hosts_of(engine: Engine, cluster_id: str) -> list[str]:
    return sorted(name for name, owner in engine.host_owners().items() if owner == cluster_id)


def scheduled(engine: Engine, start: timedelta, end: timedelta, **overrides: Any) -> Any:
    now = engine.clock.now()
    return post(
        engine,
        billing_type="SCHEDULED_CAPACITY",
        reservation_start_time=(now + start).isoformat(),
        reservation_end_time=(now + end).isoformat(),
        **overrides,
    )


def test_an_on_demand_cluster_is_held_until_it_is_deleted(engine: Engine):
    cluster_id = create(engine)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    engine.clock.advance(90 * 86400)
    engine.advance(60)
    cluster = get(engine, cluster_id)
    assert cluster["status"] == "Ready"
    assert cluster["reservation_end_time"] is None and cluster["num_reserved_gpus"] == 0
    assert len(hosts_of(engine, cluster_id)) == 2
    engine.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    engine.advance(1800, step=20)
    assert gone(engine, cluster_id) and hosts_of(engine, cluster_id) == []


def test_a_scheduled_cluster_holds_a_booking_not_hosts_until_its_start(engine: Engine):
    response = scheduled(engine, timedelta(hours=2), timedelta(hours=8), num_gpus=64)
    cluster = response.json()
    assert response.status_code == 200 and cluster["status"] == "Scheduled"
    assert cluster["gpu_worker_nodes"] == [] and hosts_of(engine, cluster["cluster_id"]) == []
    # On-demand clusters may use the other hosts; the booked fabric stays for the window.
    neighbour = create(engine, num_gpus=64)
    assert len(hosts_of(engine, neighbour["cluster_id"])) == 8
    engine.advance(2 * 3600 - 60, step=60)
    waiting = get(engine, cluster["cluster_id"])
    assert waiting["status"] == "Scheduled" and waiting["gpu_worker_nodes"] == []
    engine.advance(3600, step=20)
    started = get(engine, cluster["cluster_id"])
    assert phases(started)[:2] == ["SCHEDULED", "QUEUED"]
    assert when(started["phase_transitions"][1]["transition_time"]) == when(
        cluster["reservation_start_time"]
    )
    assert len(hosts_of(engine, cluster["cluster_id"])) == 8
    engine.advance(2 * 3600, step=60)
    assert get(engine, cluster["cluster_id"])["status"] == "Ready"


def test_a_scheduled_cluster_is_torn_down_at_the_end_of_its_window(engine: Engine):
    cluster = scheduled(engine, timedelta(hours=1), timedelta(hours=5)).json()
    engine.advance(4 * 3600, step=60)
    assert get(engine, cluster["cluster_id"])["status"] == "Ready"
    engine.advance(3600 - 60, step=60)
    assert get(engine, cluster["cluster_id"])["status"] == "Ready"
    engine.advance(60, step=60)
    ending = get(engine, cluster["cluster_id"])
    assert ending["status"] == "Deleting" and phases(ending)[-1] == "DELETING"
    engine.advance(1800, step=20)
    assert gone(engine, cluster["cluster_id"])
    assert hosts_of(engine, cluster["cluster_id"]) == []


def test_overlapping_bookings_beyond_capacity_are_refused_at_create_and_change_nothing(
    engine: Engine,
):
    first = scheduled(engine, timedelta(hours=2), timedelta(hours=8), num_gpus=64)
    create(engine, num_gpus=16)
    assert first.status_code == 200
    before = engine.dump()
    overlapping = scheduled(engine, timedelta(hours=6), timedelta(hours=10), num_gpus=64)
    assert overlapping.status_code == 409
    error = overlapping.json()["error"]
    assert error["type"] == "capacity_unavailable"
    assert "need 8 node(s) of H100_SXM in test-1" in error["message"]
    reserved = post(engine, billing_type="RESERVED", duration_days=1, num_gpus=64)
    assert reserved.status_code == 409, "a reservation from now overlaps the window too"
    assert engine.dump() == before
    after = scheduled(engine, timedelta(hours=8), timedelta(hours=12), num_gpus=64)
    assert after.status_code == 200, "a window that starts as the other ends fits"


def test_a_reserved_cluster_is_wound_down_when_its_reservation_ends(engine: Engine):
    cluster = create(engine, billing_type="RESERVED", duration_days=1)
    assert cluster["duration_hours"] == 24 and cluster["num_reserved_gpus"] == 16
    end = when(cluster["reservation_end_time"])
    engine.advance(3 * 3600, step=60)
    assert get(engine, cluster["cluster_id"])["status"] == "Ready"
    engine.clock.set(end - timedelta(seconds=30))
    engine.advance(20, step=20)
    assert get(engine, cluster["cluster_id"])["status"] == "Ready"
    engine.advance(20, step=20)
    ending = get(engine, cluster["cluster_id"])
    assert ending["status"] == "Deleting" and phases(ending)[-1] == "DELETING"
    engine.advance(1800, step=20)
    assert gone(engine, cluster["cluster_id"])


def test_extending_a_reservation_moves_its_end_and_is_checked_against_bookings(
    engine: Engine,
):
    create(engine, num_gpus=16)
    reserved = create(engine, billing_type="RESERVED", duration_days=1, num_gpus=64)
    end = when(reserved["reservation_end_time"])
    later = scheduled(engine, timedelta(days=1, hours=2), timedelta(days=1, hours=6), num_gpus=64)
    assert later.status_code == 200
    url = f"/v1/compute/clusters/{reserved['cluster_id']}"
    before = engine.dump()
    too_far = engine.client.put(
        url,
        json={"reservation_end_time": (end + timedelta(days=1)).isoformat()},
        headers=engine.headers(),
    )
    assert too_far.status_code == 409 and engine.dump() == before
    extended = engine.client.put(
        url,
        json={"reservation_end_time": (end + timedelta(hours=2)).isoformat()},
        headers=engine.headers(),
    )
    assert extended.status_code == 200
    assert when(extended.json()["reservation_end_time"]) == end + timedelta(hours=2)
    engine.advance(3 * 3600, step=60)
    engine.clock.set(end + timedelta(minutes=30))
    engine.advance(60)
    assert get(engine, reserved["cluster_id"])["status"] == "Ready", "extended past its end"
    engine.clock.set(end + timedelta(hours=2))
    engine.advance(1800, step=20)
    assert gone(engine, reserved["cluster_id"])
    engine.advance(3 * 3600, step=60)
    started = get(engine, later.json()["cluster_id"])
    assert started["status"] == "Ready" and len(started["gpu_worker_nodes"]) == 8


def test_a_booking_wider_than_any_fabric_is_refused_since_it_could_never_be_placed(
    engine: Engine,
):
    before = engine.dump()
    response = scheduled(engine, timedelta(hours=1), timedelta(hours=2), num_gpus=80)
    assert response.status_code == 409
    assert "in one fabric" in response.json()["error"]["message"]
    assert engine.dump() == before

"""Bookings hold capacity only over their own window, packed per fabric, and only so far
ahead: on-demand clusters use the hosts until a booking starts, and yield to it then.

small.yaml's test-1 has 16 H100 hosts in two fabrics of 8: ib-a (racks r01, r02) and ib-b
(racks r03, r04).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from clusterplane.clock import utc
from clusterplane.db.engine import transaction
from clusterplane.db.rows import EventRow
from clusterplane.settings import CapacitySettings
from tests.support.engine import Engine, make_engine, new_tenant

CLUSTERS = "/v1/compute/clusters"
CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
FABRIC_OF_RACK = {"r01": "ib-a", "r02": "ib-a", "r03": "ib-b", "r04": "ib-b"}


def post(engine: Engine, key: str, **overrides: Any) -> httpx.Response:
    return engine.client.post(CLUSTERS, json={**CREATE, **overrides}, headers=engine.headers(key))


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def booking(engine: Engine, key: str, start: timedelta, hours: float, gpus: int) -> httpx.Response:
    now = engine.clock.now()
    return post(
        engine,
        key,
        billing_type="SCHEDULED_CAPACITY",
        num_gpus=gpus,
        reservation_start_time=(now + start).isoformat(),
        reservation_end_time=(now + start + timedelta(hours=hours)).isoformat(),
    )


def get(engine: Engine, key: str, cluster_id: str) -> httpx.Response:
    return engine.client.get(f"{CLUSTERS}/{cluster_id}", headers=engine.headers(key))


def fabrics(cluster: dict[str, Any]) -> set[str]:
    return {FABRIC_OF_RACK[w["host_name"].split("-")[1]] for w in cluster["gpu_worker_nodes"]}


def when(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def audit(engine: Engine, cluster_id: str, kind: str) -> list[str]:
    with transaction(engine.app.sessions) as session:
        return list(
            session.scalars(
                select(EventRow.message).where(
                    EventRow.object_id == cluster_id, EventRow.kind == kind
                )
            )
        )


def test_far_future_bookings_leave_the_hosts_to_on_demand_clusters_until_they_start(
    engine: Engine,
):
    _, key_a = new_tenant(engine, "alpha")
    _, key_b = new_tenant(engine, "beta")
    early = ok(post(engine, key_a))
    start = timedelta(days=300)
    # Beta books every host of the region (beside alpha's first cluster) in 300 days.
    first = ok(booking(engine, key_b, start, 24, gpus=56))
    second = ok(booking(engine, key_b, start, 24, gpus=64))
    # Until then the hosts are idle, and alpha's on-demand work still gets them.
    wide = ok(post(engine, key_a, num_gpus=64))
    rest = ok(post(engine, key_a, num_gpus=56))
    assert len(wide["gpu_worker_nodes"]) == 8 and len(rest["gpu_worker_nodes"]) == 7
    over = booking(engine, key_b, start, 24, gpus=8)
    assert over.status_code == 409, "the bookings themselves still hold their window"
    engine.advance(3 * 3600, step=60)
    assert ok(get(engine, key_a, wide["cluster_id"]))["status"] == "Ready"
    # The on-demand clusters made after the bookings yield before the window opens.
    engine.clock.advance(start.total_seconds() - 3 * 3600 - 3600)
    engine.advance(2 * 3600, step=30)
    for cluster in (wide, rest):
        assert get(engine, key_a, cluster["cluster_id"]).status_code == 404
        [why] = audit(engine, cluster["cluster_id"], "displaced_by_booking")
        assert "booked from" in why
    assert ok(get(engine, key_a, early["cluster_id"]))["status"] == "Ready"
    engine.advance(3 * 3600, step=60)
    started = [ok(get(engine, key_b, c["cluster_id"])) for c in (first, second)]
    assert [c["status"] for c in started] == ["Ready", "Ready"]
    assert [len(c["gpu_worker_nodes"]) for c in started] == [7, 8]
    assert fabrics(started[0]) | fabrics(started[1]) == {"ib-a", "ib-b"}
    assert all(len(fabrics(c)) == 1 for c in started)
    for cluster in started:
        queued = when(cluster["phase_transitions"][1]["transition_time"])
        joined = min(
            when(w["phase_transitions"][0]["transition_time"]) for w in cluster["gpu_worker_nodes"]
        )
        assert queued == when(first["reservation_start_time"])
        assert joined - queued <= timedelta(seconds=60), "its hosts were free at its start"
    assert ok(get(engine, key_a, early["cluster_id"]))["status"] == "Ready"


def test_an_on_demand_scale_up_into_booked_hosts_is_booked_anew_and_yields_at_the_start(
    engine: Engine,
):
    _, key_a = new_tenant(engine, "alpha")
    _, key_b = new_tenant(engine, "beta")
    grower = ok(post(engine, key_a))
    engine.advance(3 * 3600, step=60)
    start = timedelta(days=10)
    bookings = [ok(booking(engine, key_b, start, 24, gpus=g)) for g in (56, 64)]
    path = f"{CLUSTERS}/{grower['cluster_id']}"
    grown = engine.client.put(path, json={"num_gpus": 16}, headers=engine.headers(key_a))
    assert ok(grown)["num_gpus"] == 16, "the hosts are idle until the bookings start"
    assert audit(engine, grower["cluster_id"], "booked_after_reservations")
    engine.clock.set(when(bookings[0]["reservation_start_time"]) - timedelta(hours=1))
    engine.advance(2 * 3600, step=30)
    assert get(engine, key_a, grower["cluster_id"]).status_code == 404
    engine.advance(3 * 3600, step=60)
    started = [ok(get(engine, key_b, c["cluster_id"])) for c in bookings]
    assert [(c["status"], len(c["gpu_worker_nodes"])) for c in started] == [
        ("Ready", 7),
        ("Ready", 8),
    ]


def test_bookings_are_packed_per_fabric_so_each_one_fits_when_it_starts(engine: Engine):
    _, key_a = new_tenant(engine, "alpha")
    _, key_b = new_tenant(engine, "beta")
    start = timedelta(hours=6)
    # Two 5-host bookings take one fabric each: 3 hosts stay free in each fabric.
    one = ok(booking(engine, key_a, start, 4, gpus=40))
    two = ok(booking(engine, key_a, start, 4, gpus=40))
    before = engine.dump()
    refused = booking(engine, key_b, start, 4, gpus=40)
    assert refused.status_code == 409, "5 hosts fit in all, but in no single fabric"
    error = refused.json()["error"]
    assert error["type"] == "capacity_unavailable" and "in one fabric" in error["message"]
    assert engine.dump() == before
    three = ok(booking(engine, key_b, start, 4, gpus=24))
    # The first project's ordinary work goes on meanwhile, beside the bookings.
    beside = ok(post(engine, key_a, num_gpus=16))
    engine.advance(start.total_seconds() + 3 * 3600, step=60)
    started = [ok(get(engine, k, c["cluster_id"])) for k, c in ((key_a, one), (key_a, two))]
    started.append(ok(get(engine, key_b, three["cluster_id"])))
    assert [c["status"] for c in started] == ["Ready"] * 3
    assert [len(c["gpu_worker_nodes"]) for c in started] == [5, 5, 3]
    assert all(len(fabrics(c)) == 1 for c in started)
    assert fabrics(started[0]) != fabrics(started[1])
    assert fabrics(started[0]) == fabrics(started[2])
    kept = ok(get(engine, key_a, beside["cluster_id"]))
    assert kept["status"] == "Ready" and fabrics(kept) == fabrics(started[1]), (
        "placed where the bookings leave room, it never has to yield"
    )


@pytest.fixture
def month_ahead(tmp_path: Path) -> Iterator[Engine]:
    (tmp_path / "month").mkdir()
    horizon = CapacitySettings(booking_horizon_days=30)
    yield from make_engine(tmp_path / "month", capacity=horizon)


def test_a_booking_may_start_only_as_far_ahead_as_the_operator_allows(
    engine: Engine, month_ahead: Engine
):
    _, key = new_tenant(engine, "alpha")
    before = engine.dump()
    year_990 = booking(engine, key, timedelta(days=365 * 964), 24, gpus=512)
    assert year_990.status_code == 400
    error = year_990.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "reservation_start_time"
    assert "at most 365 days ahead" in error["message"]
    assert engine.dump() == before
    ok(booking(engine, key, timedelta(days=364), 24, gpus=64))
    ok(post(engine, key, num_gpus=64))
    _, key = new_tenant(month_ahead, "alpha")
    refused = booking(month_ahead, key, timedelta(days=31), 24, gpus=8)
    assert refused.status_code == 400 and "at most 30 days ahead" in refused.text
    ok(booking(month_ahead, key, timedelta(days=29), 24, gpus=8))

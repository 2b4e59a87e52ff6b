"""The capacity counts the database keeps (the ledgers of serviceable hosts and steady
bookings: migration 0018) always equal a count from scratch, whoever writes and however
often the capacity check folds them; and so a create's capacity check costs the same
beside ten clusters of its region as beside hundreds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from benchmarks.fleetgen import DRIVER_ID, GPU_TYPE, REGION, FleetShape, write_fleet
from benchmarks.seed import seed_ready_clusters
from sqlalchemy import event, text

from clusterplane.services.capacity.capacity_ledger import FOLD_AT
from tests.support.clusters import cluster_body
from tests.support.databases import backend
from tests.support.engine import Engine, make_engine

KEPT_HOSTS = (
    "SELECT region, gpu_type, fabric, pool, sum(hosts) FROM serviceable_host_changes "
    "GROUP BY region, gpu_type, fabric, pool HAVING sum(hosts) <> 0"
)
COUNTED_HOSTS = (
    "SELECT region, gpu_type, fabric, coalesce(capacity_pool_id, ''), count(*) FROM hosts "
    "WHERE in_fleet_file AND state IN ('available', 'allocated') "
    "GROUP BY region, gpu_type, fabric, capacity_pool_id"
)
KEPT_BOOKINGS = (
    "SELECT region, gpu_type, sum(gpus) FROM steady_booking_changes "
    "GROUP BY region, gpu_type HAVING sum(gpus) <> 0"
)
COUNTED_BOOKINGS = (
    "SELECT region, gpu_type, sum(num_gpus) FROM clusters WHERE deleted_at IS NULL "
    "AND phase <> 'CLUSTER_PHASE_DELETING' AND reservation_start_time IS NULL "
    "AND reservation_end_time IS NULL AND capacity_pool_id IS NULL GROUP BY region, gpu_type"
)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield from make_engine(tmp_path)


def _rows(engine: Engine, sql: str) -> set[tuple[Any, ...]]:
    with engine.app.engine.connect() as conn:
        return {tuple(row) for row in conn.execute(text(sql))}


def _assert_counts_match(engine: Engine) -> None:
    assert _rows(engine, KEPT_HOSTS) == _rows(engine, COUNTED_HOSTS)
    assert _rows(engine, KEPT_BOOKINGS) == _rows(engine, COUNTED_BOOKINGS)


def _write(engine: Engine, sql: str) -> None:
    with engine.app.engine.begin() as conn:
        conn.execute(text(sql))


def _create(engine: Engine, **overrides: Any) -> str:
    response = engine.client.post(
        "/v1/compute/clusters", json=cluster_body(**overrides), headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    return str(response.json()["cluster_id"])


def test_the_kept_capacity_counts_equal_a_recount_after_every_kind_of_write(engine: Engine):
    assert _rows(engine, KEPT_HOSTS)  # the fleet's hosts are counted from the start
    on_demand = _create(engine, num_gpus=16)
    _create(engine, cluster_name="second")
    _create(engine, cluster_name="reserved", billing_type="RESERVED", duration_days=1)
    _assert_counts_match(engine)
    assert _rows(engine, KEPT_BOOKINGS) == {("test-1", "H100_SXM", 24)}

    engine.advance(600, step=30)  # bring-ups: hosts handed out, phases moving
    scaled = engine.client.put(
        f"/v1/compute/clusters/{on_demand}", json={"num_gpus": 8}, headers=engine.headers()
    )
    assert scaled.status_code == 200, scaled.text
    _assert_counts_match(engine)
    assert _rows(engine, KEPT_BOOKINGS) == {("test-1", "H100_SXM", 16)}

    deleted = engine.client.delete(f"/v1/compute/clusters/{on_demand}", headers=engine.headers())
    assert deleted.status_code == 200, deleted.text
    _assert_counts_match(engine)  # deleting: no longer booked
    engine.advance(600, step=30)
    _assert_counts_match(engine)

    # Writes from outside the engine (an operator's SQL) move the counts too.
    _write(engine, "UPDATE hosts SET state = 'offline' WHERE cluster_id IS NULL AND name LIKE '%1'")
    _write(engine, "UPDATE hosts SET capacity_pool_id = 'pool-x' WHERE name LIKE '%2'")
    _write(engine, "UPDATE hosts SET in_fleet_file = false WHERE name LIKE '%3'")
    _write(engine, "DELETE FROM hosts WHERE cluster_id IS NULL AND name LIKE '%4'")
    _write(engine, "UPDATE clusters SET region = 'elsewhere' WHERE name = 'second'")
    _assert_counts_match(engine)
    assert ("elsewhere", "H100_SXM", 8) in _rows(engine, KEPT_BOOKINGS)


def _ledger_rows(engine: Engine) -> int:
    with engine.app.engine.connect() as conn:
        return sum(
            conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("serviceable_host_changes", "steady_booking_changes")
        )


def test_the_capacity_check_folds_a_long_ledger_without_changing_a_count(engine: Engine):
    kept = _create(engine, cluster_name="kept")
    for _ in range(FOLD_AT // 2 + 1):  # each create and delete appends two rows
        gone = _create(engine, cluster_name="gone")
        engine.client.delete(f"/v1/compute/clusters/{gone}", headers=engine.headers())
        engine.app.manager.run_until_idle()
    _create(engine, cluster_name="last")  # its check finds the ledger long, and folds it
    _assert_counts_match(engine)
    assert _ledger_rows(engine) <= FOLD_AT, "folded: the creates and deletes appended more"
    assert _rows(engine, KEPT_BOOKINGS) == {("test-1", "H100_SXM", 16)}
    assert kept


# A fleet with room for hundreds of one-worker clusters beside the ones created here.
ROOMY = FleetShape(1, blocks=4, racks=16, hosts_per_rack=16)


def _vm_steps(engine: Engine, body: dict[str, Any]) -> int:
    """SQLite virtual-machine steps (in hundreds) a create of `body` takes, the fewest
    of three: the work its statements do, whatever the machine's speed."""
    counted = [0]
    lock = threading.Lock()

    def tick() -> int:
        with lock:
            counted[0] += 1
        return 0

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        dbapi_connection.set_progress_handler(tick, 100)

    db = engine.app.engine
    db.pool.dispose()  # every connection from now on is checked out with the handler
    event.listen(db, "checkout", on_checkout)
    steps = []
    try:
        for _ in range(3):
            counted[0] = 0
            response = engine.client.post(
                "/v1/compute/clusters", json=body, headers=engine.headers()
            )
            assert response.status_code == 200, response.text
            steps.append(counted[0])
    finally:
        event.remove(db, "checkout", on_checkout)
    return min(steps)


@pytest.mark.skipif(backend() != "sqlite", reason="counts SQLite's virtual-machine steps")
def test_a_creates_database_work_does_not_grow_with_the_regions_clusters(tmp_path: Path):
    fleet = write_fleet(tmp_path / "fleet.yaml", ROOMY)
    body = {
        "cluster_name": "probe",
        "billing_type": "ON_DEMAND",
        "gpu_type": GPU_TYPE,
        "num_gpus": 8,
        "region": REGION,
        "nvidia_version_id": DRIVER_ID,
    }
    for engine in make_engine(tmp_path, fleet=fleet):
        db = engine.app.engine
        seed_ready_clusters(db, workers=[1] * 10, prefix="few", documents=False)
        beside_few = _vm_steps(engine, body)
        seed_ready_clusters(db, workers=[1] * 600, prefix="many", documents=False)
        beside_many = _vm_steps(engine, body)
        assert beside_many <= beside_few * 1.1, (beside_few, beside_many)

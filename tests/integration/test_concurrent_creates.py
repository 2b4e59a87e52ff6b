"""Many creates at once against a real server: capacity is never handed out twice.

Real HTTP against a real `clusterplane serve` process, on SQLite or PostgreSQL
(CLUSTERPLANE_TEST_DATABASE). After every response, and once more at the end, the fleet
invariants are read straight from the database: no host serves two live nodes, every live
worker's host is held by that worker's cluster, no cluster holds more hosts than its
GPUs need, every cluster sits in one fabric, and no more hosts are held than exist.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import Engine, text

from clusterplane.db.engine import make_engine
from tests.support.server import SMALL_FLEET, ServerProcess

BODY = {
    "cluster_name": "race",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def test_concurrent_creates_beyond_capacity_succeed_exactly_as_far_as_hosts_go(
    server: ServerProcess,
):
    def create(i: int) -> httpx.Response:
        with server.client() as client:
            return client.post("/v1/compute/clusters", json={**BODY, "cluster_name": f"r{i}"})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(create, range(16)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 8, 409: 8}, statuses
    for refused in (r for r in responses if r.status_code == 409):
        assert refused.json()["error"]["type"] == "capacity_unavailable"
    with server.client() as client:
        hosts = client.get("/admin/v1/fleet/hosts").json()["hosts"]
        clusters = client.get("/v1/compute/clusters").json()["clusters"]
    owned = Counter(h["cluster_id"] for h in hosts if h["region"] == "test-1")
    created = {r.json()["cluster_id"] for r in responses if r.status_code == 200}
    assert {c["cluster_id"] for c in clusters} == created
    assert set(owned) == created and all(n == 2 for n in owned.values())
    workers = [w["host_name"] for c in clusters for w in c["gpu_worker_nodes"]]
    assert len(workers) == len(set(workers)) == 16


# --- many creates, half of them beyond capacity, invariants after every operation ---------

RACE_REGION = "race-1"
HOSTS = 40  # 2 fabrics x 2 blocks x 2 racks x 5 hosts
CREATES = 40  # of 2 nodes each: capacity for exactly half


def _race_fleet(path: Path) -> Path:
    fleet = yaml.safe_load(SMALL_FLEET.read_text())
    region = dict(fleet["regions"][0])
    region.update(name=RACE_REGION, network="10.209.0.0/24")
    region["fabrics"] = [
        {
            "name": f"ib-{f}",
            "blocks": [
                {
                    "name": f"b{b}",
                    "racks": [
                        {"name": f"f{f}b{b}r{r}", "hosts": [{"profile": "h100", "count": 5}]}
                        for r in range(2)
                    ],
                }
                for b in range(2)
            ],
        }
        for f in range(2)
    ]
    fleet["regions"] = [*fleet["regions"], region]
    path.write_text(yaml.safe_dump(fleet))
    return path


def check_invariants(db: Engine) -> None:
    """The fleet as the database has it, read in one transaction."""
    with db.connect() as conn:
        doubled = conn.execute(
            text(
                "SELECT host_id FROM nodes WHERE deleted_at IS NULL AND host_id IS NOT NULL "
                "GROUP BY host_id HAVING COUNT(*) > 1"
            )
        ).all()
        assert doubled == [], f"hosts serving two live nodes: {doubled}"
        stray = conn.execute(
            text(
                "SELECT n.id FROM nodes n JOIN hosts h ON h.id = n.host_id "
                "WHERE n.deleted_at IS NULL AND (h.cluster_id IS NULL "
                "OR h.cluster_id != n.cluster_id OR h.state != 'allocated')"
            )
        ).all()
        assert stray == [], f"live workers on hosts their cluster does not hold: {stray}"
        held = conn.execute(
            text(
                "SELECT c.id, c.num_gpus, COUNT(h.id), COUNT(DISTINCT h.fabric) "
                "FROM clusters c JOIN hosts h ON h.cluster_id = c.id GROUP BY c.id, c.num_gpus"
            )
        ).all()
        for cluster_id, num_gpus, hosts, fabrics in held:
            assert hosts * 8 <= num_gpus, f"{cluster_id} holds {hosts} hosts for {num_gpus}"
            assert fabrics == 1, f"{cluster_id} spans {fabrics} fabrics"
        states = conn.execute(
            text("SELECT COUNT(*) FROM hosts WHERE (cluster_id IS NULL) = (state = 'allocated')")
        ).scalar_one()
        assert states == 0, "a host's state disagrees with whether a cluster holds it"
        total, allocated = conn.execute(
            text("SELECT COUNT(*), COUNT(cluster_id) FROM hosts WHERE region = :region"),
            {"region": RACE_REGION},
        ).one()
        assert allocated <= total == HOSTS


@pytest.fixture
def race_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Engine]]:
    with ServerProcess(tmp_path, fleet=_race_fleet(tmp_path / "race.yaml")) as proc:
        db = make_engine(proc.database_url)
        try:
            yield proc, db
        finally:
            db.dispose()


def _race(
    server: ServerProcess, db: Engine, bodies: list[dict[str, Any]], headers: dict[str, str]
) -> list[httpx.Response]:
    failures: list[BaseException] = []
    lock = threading.Lock()

    def create(body: dict[str, Any]) -> httpx.Response:
        with server.client() as client:
            response = client.post("/v1/compute/clusters", json=body, headers=headers)
        try:
            check_invariants(db)
        except AssertionError as exc:
            with lock:
                failures.append(exc)
        return response

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(create, bodies))
    assert failures == [], failures[0]
    check_invariants(db)
    return responses


def test_many_concurrent_creates_with_room_for_half_keep_the_fleet_invariants(
    race_server: tuple[ServerProcess, Engine],
):
    server, db = race_server
    bodies = [{**BODY, "region": RACE_REGION, "cluster_name": f"race-{i}"} for i in range(CREATES)]
    responses = _race(server, db, bodies, {})
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: CREATES // 2, 409: CREATES // 2}, statuses
    for refused in (r for r in responses if r.status_code == 409):
        error = refused.json()["error"]
        assert error["type"] == "capacity_unavailable"
        assert error["code"] == "insufficient_capacity"
        assert error["message"].startswith(f"need 2 nodes of H100_SXM in {RACE_REGION}")
    with server.client() as client:
        hosts = client.get("/admin/v1/fleet/hosts", params={"region": RACE_REGION}).json()
    owners = Counter(h["cluster_id"] for h in hosts["hosts"])
    created = {r.json()["cluster_id"] for r in responses if r.status_code == 200}
    assert set(owners) == created and set(owners.values()) == {2}


def test_concurrent_creates_in_one_project_stop_exactly_at_its_quota(
    race_server: tuple[ServerProcess, Engine],
):
    server, db = race_server
    with server.client() as client:
        project = client.get("/v3/whoami").json()["project"]["id"]
        quota = client.put(f"/admin/v1/projects/{project}/quota", json={"max_gpus": 80})
        assert quota.status_code == 200, quota.text
    bodies = [
        {**BODY, "region": RACE_REGION, "num_gpus": 8, "cluster_name": f"q-{i}"} for i in range(20)
    ]
    responses = _race(server, db, bodies, {})
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 10, 403: 10}, statuses
    assert {r.json()["error"]["type"] for r in responses if r.status_code == 403} == {
        "quota_exceeded"
    }
    with server.client() as client:
        assert client.get(f"/admin/v1/projects/{project}/quota").json()["used_gpus"] == 80

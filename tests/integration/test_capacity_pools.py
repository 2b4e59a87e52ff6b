"""Capacity pools and the booking calendar through the admin API and the CLI.

A pool holds hosts for one project over a window: clusters naming it draw from it first,
no other project's cluster ever lands on its hosts while it lives, and its clusters are
wound down when it ends.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

import pytest

from clusterplane.cli import capacity
from clusterplane.cli.main import parser
from tests.support.engine import Engine

CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
RACK_1 = [f"test1-r01-0{i}" for i in range(1, 5)]


def admin(engine: Engine, method: str, path: str, body: Any = None) -> Any:
    response = engine.client.request(
        method, f"/admin/v1/{path}", json=body, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    return response.json()


def tenant(engine: Engine, name: str) -> tuple[str, str]:
    """(project id, API key) of a new project with one member."""
    user = admin(engine, "POST", "users", {"name": name})["id"]
    project = admin(engine, "POST", "projects", {"name": name, "slug": name})["id"]
    key = admin(engine, "POST", "api-keys", {"user_id": user, "project_id": project})["api_key"]
    return project, key


def make_pool(engine: Engine, project: str, hours: float = 24, **extra: Any) -> dict[str, Any]:
    now = engine.clock.now()
    body = {
        "name": "alpha-training",
        "region": "test-1",
        "gpu_type": "H100_SXM",
        "project_id": project,
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=hours)).isoformat(),
        "host_names": RACK_1,
        **extra,
    }
    result: dict[str, Any] = admin(engine, "POST", "capacity/pools", body)
    return result


def post(engine: Engine, key: str, **overrides: Any) -> Any:
    return engine.client.post(
        "/v1/compute/clusters", json={**CREATE, **overrides}, headers=engine.headers(key)
    )


def hosts_of(engine: Engine, cluster_id: str) -> set[str]:
    return {name for name, owner in engine.host_owners().items() if owner == cluster_id}


@pytest.fixture
def alpha(engine: Engine) -> tuple[str, str]:
    return tenant(engine, "alpha")


@pytest.fixture
def beta(engine: Engine) -> tuple[str, str]:
    return tenant(engine, "beta")


def test_a_pool_holds_its_hosts_for_its_project_only(
    engine: Engine, alpha: tuple[str, str], beta: tuple[str, str]
):
    pool = make_pool(engine, alpha[0])
    assert pool["hosts"] == RACK_1 and pool["num_hosts"] == 4
    refused = post(engine, beta[1], num_gpus=104)
    assert refused.status_code == 409, "only 12 general hosts are left"
    spread = [post(engine, beta[1], num_gpus=64), post(engine, beta[1], num_gpus=32)]
    assert [r.status_code for r in spread] == [200, 200]
    taken = set().union(*(hosts_of(engine, r.json()["cluster_id"]) for r in spread))
    assert len(taken) == 12 and not taken & set(RACK_1)
    stolen = post(engine, beta[1], capacity_pool_id=pool["id"])
    assert stolen.status_code == 403
    assert stolen.json()["error"]["param"] == "capacity_pool_id"
    mine = post(engine, alpha[1], num_gpus=32, capacity_pool_id=pool["id"])
    assert mine.status_code == 200
    assert mine.json()["num_capacity_pool_gpus"] == 32
    assert mine.json()["capacity_pool_id"] == pool["id"]
    assert hosts_of(engine, mine.json()["cluster_id"]) == set(RACK_1)


def test_a_pool_cluster_draws_from_the_pool_first_then_general_capacity(
    engine: Engine, alpha: tuple[str, str]
):
    pool = make_pool(engine, alpha[0])
    response = post(engine, alpha[1], num_gpus=48, capacity_pool_id=pool["id"])
    assert response.status_code == 200
    cluster = response.json()
    assert cluster["num_gpus"] == 48 and cluster["num_capacity_pool_gpus"] == 32
    hosts = hosts_of(engine, cluster["cluster_id"])
    assert set(RACK_1) <= hosts and len(hosts) == 6
    engine.advance(3 * 3600, step=60)
    ready = engine.client.get(
        f"/v1/compute/clusters/{cluster['cluster_id']}", headers=engine.headers(alpha[1])
    ).json()
    assert ready["status"] == "Ready" and ready["num_capacity_pool_gpus"] == 32


def test_a_pool_cluster_is_wound_down_when_the_pool_ends_and_its_hosts_rejoin_the_fleet(
    engine: Engine, alpha: tuple[str, str], beta: tuple[str, str]
):
    pool = make_pool(engine, alpha[0], hours=6)
    cluster = post(engine, alpha[1], num_gpus=32, capacity_pool_id=pool["id"]).json()
    engine.advance(5 * 3600, step=60)
    url = f"/v1/compute/clusters/{cluster['cluster_id']}"
    assert engine.client.get(url, headers=engine.headers(alpha[1])).json()["status"] == "Ready"
    engine.advance(3600 + 1800, step=20)
    assert engine.client.get(url, headers=engine.headers(alpha[1])).status_code == 404
    everything = post(engine, beta[1], num_gpus=128)
    assert everything.status_code == 409, "no single fabric holds 16 hosts"
    wide = [post(engine, beta[1], num_gpus=64), post(engine, beta[1], num_gpus=64)]
    assert [r.status_code for r in wide] == [200, 200], "the pool's hosts are general again"


def test_a_pool_cannot_take_booked_or_busy_hosts_and_changes_nothing_when_refused(
    engine: Engine, alpha: tuple[str, str], beta: tuple[str, str]
):
    busy = post(engine, beta[1], num_gpus=32).json()
    busy_host = sorted(hosts_of(engine, busy["cluster_id"]))[0]
    now = engine.clock.now()
    start, end = now + timedelta(hours=1), now + timedelta(hours=3)
    booked = post(
        engine,
        beta[1],
        num_gpus=64,
        billing_type="SCHEDULED_CAPACITY",
        reservation_start_time=start.isoformat(),
        reservation_end_time=end.isoformat(),
    )
    assert booked.status_code == 200
    before = engine.dump()
    window = {
        "name": "p",
        "region": "test-1",
        "gpu_type": "H100_SXM",
        "project_id": alpha[0],
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(days=1)).isoformat(),
    }
    url = "/admin/v1/capacity/pools"
    taken = engine.client.post(
        url, json={**window, "host_names": [busy_host]}, headers=engine.headers()
    )
    assert taken.status_code == 409 and busy_host in taken.json()["error"]["message"]
    overbooked = engine.client.post(url, json={**window, "num_hosts": 8}, headers=engine.headers())
    assert overbooked.status_code == 409, "12 general hosts are booked by the two clusters"
    assert "booked" in overbooked.json()["error"]["message"]
    assert engine.dump() == before
    fits = engine.client.post(url, json={**window, "num_hosts": 4}, headers=engine.headers())
    assert fits.status_code == 200


def test_a_pool_in_use_cannot_be_deleted_and_an_unused_one_returns_its_hosts(
    engine: Engine, alpha: tuple[str, str], beta: tuple[str, str]
):
    pool = make_pool(engine, alpha[0])
    cluster = post(engine, alpha[1], num_gpus=8, capacity_pool_id=pool["id"]).json()
    url = f"/admin/v1/capacity/pools/{pool['id']}"
    before = engine.dump()
    in_use = engine.client.delete(url, headers=engine.headers())
    assert in_use.status_code == 409 and cluster["cluster_id"] in in_use.json()["error"]["message"]
    assert engine.dump() == before
    engine.client.delete(
        f"/v1/compute/clusters/{cluster['cluster_id']}", headers=engine.headers(alpha[1])
    )
    engine.advance(1800, step=20)
    assert engine.client.delete(url, headers=engine.headers()).json() == {
        "id": pool["id"],
        "deleted": True,
    }
    assert admin(engine, "GET", "capacity/pools") == {"pools": []}
    assert post(engine, beta[1], num_gpus=64).status_code == 200


def test_the_calendar_shows_each_booking_with_its_window(engine: Engine, alpha: tuple[str, str]):
    pool = make_pool(engine, alpha[0])
    on_demand = post(engine, alpha[1], num_gpus=16).json()
    now = engine.clock.now()
    start, end = now + timedelta(hours=2), now + timedelta(hours=4)
    window = post(
        engine,
        alpha[1],
        num_gpus=40,
        capacity_pool_id=pool["id"],
        billing_type="SCHEDULED_CAPACITY",
        reservation_start_time=start.isoformat(),
        reservation_end_time=end.isoformat(),
    ).json()
    view = admin(engine, "GET", "capacity/calendar?region=test-1&gpu_type=H100_SXM")
    (group,) = view["calendar"]
    assert group["general_hosts"] == 12
    assert group["pools"][0]["id"] == pool["id"] and group["pools"][0]["hosts"] == 4
    rows = {b["cluster_id"]: b for b in group["bookings"]}
    assert rows[on_demand["cluster_id"]]["general_nodes"] == 2
    assert rows[on_demand["cluster_id"]]["ends_at"] is None
    assert rows[window["cluster_id"]]["pool_nodes"] == 4
    assert rows[window["cluster_id"]]["general_nodes"] == 1
    assert rows[window["cluster_id"]]["starts_at"].startswith(start.strftime("%Y-%m-%dT%H:%M"))
    assert group["peak_booked_nodes"] == 3


def run_cli(engine: Engine, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    args: argparse.Namespace = parser().parse_args(
        ["capacity", "--api-key", engine.admin_key, *argv]
    )
    code = capacity.run(args, client=engine.client)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


def test_the_cli_creates_lists_shows_and_deletes_pools_and_prints_the_calendar(
    engine: Engine, alpha: tuple[str, str], capsys: pytest.CaptureFixture[str]
):
    now = engine.clock.now()
    code, created, _ = run_cli(
        engine,
        capsys,
        "pools",
        "create",
        "--name",
        "cli-pool",
        "--region",
        "test-1",
        "--gpu-type",
        "H100_SXM",
        "--project-id",
        alpha[0],
        "--starts-at",
        now.isoformat(),
        "--ends-at",
        (now + timedelta(days=2)).isoformat(),
        "--num-hosts",
        "4",
    )
    assert code == 0 and created["num_hosts"] == 4
    code, listed, _ = run_cli(engine, capsys, "pools", "list")
    assert [p["id"] for p in listed["pools"]] == [created["id"]]
    code, shown, _ = run_cli(engine, capsys, "pools", "show", created["id"])
    assert shown["hosts"] == created["hosts"]
    code, calendar, _ = run_cli(engine, capsys, "calendar", "--region", "test-1")
    assert code == 0 and calendar["calendar"][0]["general_hosts"] == 12
    code, _, err = run_cli(engine, capsys, "pools", "show", "pool-missing")
    assert code == 1 and "404" in err and "not found" in err
    code, deleted, _ = run_cli(engine, capsys, "pools", "delete", created["id"])
    assert code == 0 and deleted["deleted"] is True

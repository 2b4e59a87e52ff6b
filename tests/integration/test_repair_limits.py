"""One tenant's repairs cannot drain the fleet or hold up another tenant's.

* A node has at most one open remediation: a second request is a 409 (spec envelope,
  `x-should-retry: false`) naming the open one, also when many arrive at once.
* A move (or eviction) a tenant asks for on a host nothing is known against gives that
  host back to the fleet; only evidence (a health signal, a failed check) quarantines it.
* A project has a cap on repairs at once (`HealthSettings.max_project_repairs`, never the
  whole fleet cap), so another project's repair starts when its grace period ends.

Two projects on `small.yaml` (20 hosts: a fleet cap of 2 repairs at once), in-process on a
manual clock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx

from tests.integration.test_health_remediation import ingest
from tests.integration.test_lifecycle import CREATE, when
from tests.integration.test_remediation_execution import hosts
from tests.support.engine import Engine
from tests.support.tenants import new_tenant

CLUSTERS = "/v1/compute/clusters"
OPEN = ("PENDING_APPROVAL", "PENDING", "QUARANTINING", "QUARANTINED", "RUNNING")
REPAIRING = ("QUARANTINING", "QUARANTINED", "RUNNING")
GRACE = timedelta(minutes=30)  # EngineSettings.remediation_grace_seconds


def ready_cluster(engine: Engine, key: str, num_gpus: int) -> dict[str, Any]:
    created = engine.client.post(
        CLUSTERS, json={**CREATE, "num_gpus": num_gpus}, headers=engine.headers(key)
    )
    assert created.status_code == 200, created.text
    engine.advance(3 * 3600, step=60)
    cluster: dict[str, Any] = engine.client.get(
        f"{CLUSTERS}/{created.json()['cluster_id']}", headers=engine.headers(key)
    ).json()
    assert cluster["status"] == "Ready"
    return cluster


def request_repair(
    engine: Engine, key: str, cluster: dict[str, Any], index: int, mode: str
) -> httpx.Response:
    instance = cluster["gpu_worker_nodes"][index]["instance_id"]
    return engine.client.post(
        f"{CLUSTERS}/{cluster['cluster_id']}/instances/{instance}/remediations",
        json={"mode": f"REMEDIATION_MODE_{mode}", "reason": "my job is slow"},
        headers=engine.headers(key),
    )


def requested(engine: Engine, key: str, cluster: dict[str, Any], index: int, mode: str) -> str:
    response = request_repair(engine, key, cluster, index, mode)
    assert response.status_code == 200, response.text
    remediation_id: str = response.json()["id"]
    return remediation_id


def remediations(engine: Engine, key: str, cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    response = engine.client.get(
        f"{CLUSTERS}/{cluster['cluster_id']}/instances/-/remediations",
        params={"page_size": 1000},
        headers=engine.headers(key),
    )
    assert response.status_code == 200, response.text
    return {r["id"]: r for r in response.json()["remediations"]}


def review(
    engine: Engine, key: str, cluster: dict[str, Any], rid: str, action: str, **body: Any
) -> dict[str, Any]:
    response = engine.client.post(
        f"{CLUSTERS}/{cluster['cluster_id']}/instances/-/remediations/{rid}/{action}",
        json=body,
        headers=engine.headers(key),
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def assert_names_the_open_one(response: httpx.Response, open_id: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["type"] == "conflict" and error["param"] == "instance_id"
    assert open_id in error["message"]


def test_a_second_repair_of_a_node_is_a_409_naming_the_open_one_until_it_ends(engine: Engine):
    _, key = new_tenant(engine, "alpha")
    cluster = ready_cluster(engine, key, 16)
    first = requested(engine, key, cluster, 0, "REBOOT_VM")

    for mode in ("REBOOT_VM", "HOST_AWARE", "EVICT_WITHOUT_REPLACEMENT"):
        assert_names_the_open_one(request_repair(engine, key, cluster, 0, mode), first)
    recommended = engine.client.post(
        f"/admin/v1/clusters/{cluster['cluster_id']}/instances/"
        f"{cluster['gpu_worker_nodes'][0]['instance_id']}/recommendations",
        json={"mode": "REMEDIATION_MODE_VM_ONLY"},
        headers=engine.headers(),
    )
    assert_names_the_open_one(recommended, first)
    other_node = requested(engine, key, cluster, 1, "REBOOT_VM")  # another node: its own
    review(engine, key, cluster, first, "cancel")
    again = requested(engine, key, cluster, 0, "REBOOT_VM")

    states = {rid: r["state"] for rid, r in remediations(engine, key, cluster).items()}
    assert states == {first: "CANCELLED", other_node: "PENDING", again: "PENDING"}


def test_an_sdk_retry_of_a_repair_request_gets_the_repair_it_made_not_a_409(engine: Engine):
    _, key = new_tenant(engine, "alpha")
    cluster = ready_cluster(engine, key, 16)
    instance = cluster["gpu_worker_nodes"][0]["instance_id"]
    path = f"{CLUSTERS}/{cluster['cluster_id']}/instances/{instance}/remediations"
    body = {"mode": "REMEDIATION_MODE_REBOOT_VM"}
    first = engine.client.post(path, json=body, headers=engine.headers(key))
    retried = engine.client.post(
        path, json=body, headers={**engine.headers(key), "x-stainless-retry-count": "1"}
    )
    assert first.status_code == 200 and retried.status_code == 200, retried.text
    assert retried.json()["id"] == first.json()["id"]
    assert list(remediations(engine, key, cluster)) == [first.json()["id"]]


def test_concurrent_requests_for_one_node_open_exactly_one_repair(engine: Engine):
    _, key = new_tenant(engine, "alpha")
    cluster = ready_cluster(engine, key, 16)
    instance = cluster["gpu_worker_nodes"][0]["instance_id"]
    path = f"{CLUSTERS}/{cluster['cluster_id']}/instances/{instance}/remediations"

    async def at_once() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=engine.app.api)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=engine.headers(key)
        ) as http:
            body = {"mode": "REMEDIATION_MODE_REBOOT_VM"}
            return await asyncio.gather(*(http.post(path, json=body) for _ in range(8)))

    answers = asyncio.run(at_once())

    [accepted] = [r for r in answers if r.status_code == 200]
    for refused in (r for r in answers if r.status_code != 200):
        assert_names_the_open_one(refused, accepted.json()["id"])
    assert list(remediations(engine, key, cluster)) == [accepted.json()["id"]]


def run_all(engine: Engine, key: str, cluster: dict[str, Any], rounds: int = 600) -> None:
    for _ in range(rounds):
        if not any(r["state"] in OPEN for r in remediations(engine, key, cluster).values()):
            return
        engine.advance(60, step=30)
    raise AssertionError("the repairs did not end")


def test_moves_a_tenant_asks_for_give_the_old_hosts_back_to_every_tenant(engine: Engine):
    _, alpha = new_tenant(engine, "alpha")
    _, beta = new_tenant(engine, "beta")
    cluster = ready_cluster(engine, alpha, 32)
    before = {w["host_name"] for w in cluster["gpu_worker_nodes"]}
    moves = [requested(engine, alpha, cluster, i, "HOST_AWARE") for i in range(4)]

    run_all(engine, alpha, cluster)

    done = remediations(engine, alpha, cluster)
    assert [done[rid]["state"] for rid in moves] == ["SUCCEEDED"] * 4
    fleet = hosts(engine)
    assert [h["name"] for h in fleet.values() if h["state"] == "quarantined"] == []
    free = [h for h in fleet.values() if h["region"] == "test-1" and not h["cluster_id"]]
    assert len(free) == 12, "four moves took no host away from the fleet"
    for number in range(len(free)):  # the other project can have every one of them
        other = engine.client.post(
            CLUSTERS,
            json={**CREATE, "cluster_name": f"b{number}", "num_gpus": 8},
            headers=engine.headers(beta),
        )
        assert other.status_code == 200, other.text
    moved = engine.client.get(f"{CLUSTERS}/{cluster['cluster_id']}", headers=engine.headers(alpha))
    workers = moved.json()["gpu_worker_nodes"]
    assert moved.json()["status"] == "Ready" and len(workers) == 4
    assert {w["host_name"] for w in workers} != before, "the nodes did move"


def test_a_move_behind_a_health_signal_still_quarantines_the_old_host(engine: Engine):
    _, alpha = new_tenant(engine, "alpha")
    cluster = ready_cluster(engine, alpha, 24)
    node = cluster["gpu_worker_nodes"][0]
    signal = ingest(engine, host_name=node["host_name"], kind="thermal")
    [proposal] = remediations(engine, alpha, cluster)
    assert signal["remediation_id"] == proposal
    review(engine, alpha, cluster, proposal, "approve", mode="REMEDIATION_MODE_HOST_AWARE")
    run_all(engine, alpha, cluster)

    assert remediations(engine, alpha, cluster)[proposal]["state"] == "SUCCEEDED"
    assert hosts(engine)[node["host_name"]]["state"] == "quarantined"


def test_one_projects_repairs_leave_room_for_another_projects_repair_in_its_grace_period(
    engine: Engine,
):
    _, alpha = new_tenant(engine, "alpha")
    _, beta = new_tenant(engine, "beta")
    big = ready_cluster(engine, alpha, 40)
    small = ready_cluster(engine, beta, 16)
    alphas = [requested(engine, alpha, big, i, "REBOOT_VM") for i in range(5)]
    engine.advance(5 * 60, step=60)
    theirs = requested(engine, beta, small, 0, "REBOOT_VM")
    asked_at = when(remediations(engine, beta, small)[theirs]["create_time"])

    most_at_once = 0
    while engine.clock.now() < asked_at + GRACE + timedelta(seconds=30):
        engine.advance(10, step=10)
        mine = remediations(engine, alpha, big)
        most_at_once = max(most_at_once, sum(mine[r]["state"] in REPAIRING for r in alphas))

    repair = remediations(engine, beta, small)[theirs]
    assert repair["state"] != "PENDING", "the other project's repair waited past its grace"
    assert when(repair["start_time"]) <= asked_at + GRACE + timedelta(seconds=10)
    assert most_at_once == 1, "one project holds at most its cap (1 of a fleet cap of 2)"
    run_all(engine, alpha, big)
    assert {remediations(engine, alpha, big)[r]["state"] for r in alphas} == {"SUCCEEDED"}

"""Two server replicas on one database under a health-report storm, both group-committing.

Node agents report to either replica at once: XIDs on every worker of four clusters and on
idle hosts, from many connections; each replica gets the same first round (so both decide
about the same nodes at the same moment), then the rest in its own order. Every report is
answered 200 with its own event and stored exactly once (a deadlock or a serialization
failure between the replicas' batches is retried, never answered 5xx), and however the
two replicas' batches interleave, no node ends up with two open remediations.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.support.databases import fresh_database_url
from tests.support.server import SMALL_FLEET, ServerProcess

CLUSTERS = "/v1/compute/clusters"
EVENTS = "/admin/v1/health/events"
ROUNDS = 6  # reports per host per replica
CONNECTIONS = 12  # concurrent connections per replica


def _ready_clusters(http: httpx.Client, count: int, gpus: int) -> list[dict[str, Any]]:
    ids = []
    for number in range(count):
        body = {
            "cluster_name": f"storm-{number}",
            "num_gpus": gpus,
            "billing_type": "ON_DEMAND",
            "gpu_type": "H100_SXM",
            "region": "test-1",
            "nvidia_version_id": "cu128-drv570-ubuntu2204",
        }
        created = http.post(CLUSTERS, json=body)
        assert created.status_code == 200, created.text
        ids.append(created.json()["cluster_id"])
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        clusters: list[dict[str, Any]] = [http.get(f"{CLUSTERS}/{cid}").json() for cid in ids]
        if all(c["status"] == "Ready" for c in clusters):
            return clusters
        time.sleep(0.2)
    raise AssertionError("the clusters were not Ready in 90 s")


def _storm(replica: ServerProcess, reports: list[dict[str, Any]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=CONNECTIONS)
        headers = {"Authorization": f"Bearer {replica.api_key}"}
        async with httpx.AsyncClient(
            base_url=replica.base_url, headers=headers, limits=limits, timeout=60
        ) as http:
            return await asyncio.gather(*(http.post(EVENTS, json=r) for r in reports))

    return asyncio.run(run())


def _reports(hosts: list[str], tag: str, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    reports = [{"host_name": host, "kind": "xid", "xid_code": 79} for host in hosts]
    later = [
        {"host_name": host, "kind": "xid", "xid_code": rng.choice([79, 48, 13])}
        for _ in range(ROUNDS - 1)
        for host in hosts
    ]
    rng.shuffle(later)
    reports += later
    for number, report in enumerate(reports):
        report["message"] = f"{tag}-{number}"
    return reports


def test_two_replicas_under_a_report_storm_store_every_report_once_and_answer_each(
    tmp_path: Path,
):
    database = fresh_database_url(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = ServerProcess(tmp_path / "a", fleet=SMALL_FLEET, database_url=database, time_scale=3600)
    second = ServerProcess(
        tmp_path / "b", fleet=SMALL_FLEET, database_url=database, time_scale=3600
    )
    second.api_key = first.api_key
    with first, second:
        with first.client() as http:
            clusters = _ready_clusters(http, 4, 24)
            fleet = http.get("/admin/v1/fleet/hosts").json()["hosts"]
        workers = [w["host_name"] for c in clusters for w in c["gpu_worker_nodes"]]
        idle = [h["name"] for h in fleet if not h["cluster_id"]]
        hosts = workers + idle
        to_first = _reports(hosts, "a", seed=1)
        to_second = _reports(hosts, "b", seed=2)
        with_second: list[list[httpx.Response]] = []

        async def both() -> list[httpx.Response]:
            other = asyncio.to_thread(lambda: with_second.append(_storm(second, to_second)))
            mine = asyncio.to_thread(_storm, first, to_first)
            answered, _ = await asyncio.gather(mine, other)
            return answered

        answered = asyncio.run(both()) + with_second[0]
        with first.client() as http:
            stored = http.get(EVENTS).json()["events"]
            remediations = [
                r
                for c in clusters
                for r in http.get(
                    f"{CLUSTERS}/{c['cluster_id']}/instances/-/remediations",
                    params={"page_size": 1000},
                ).json()["remediations"]
            ]

    failed = [(r.status_code, r.text[:200]) for r in answered if r.status_code != 200]
    assert not failed, f"{len(failed)} of {len(answered)} reports refused: {failed[:3]}"
    sent = [r["message"] for r in to_first + to_second]
    assert sorted(r.json()["message"] for r in answered) == sorted(sent)
    copies = Counter(e["message"] for e in stored)
    assert sorted(copies) == sorted(sent) and set(copies.values()) == {1}, (
        "every report is stored exactly once"
    )
    open_per_node = Counter(
        r["instance_id"]
        for r in remediations
        if r["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED", "AUTO_RESOLVED")
    )
    assert open_per_node and max(open_per_node.values()) == 1, (
        f"a node has two open remediations: {open_per_node}"
    )

"""Two server replicas on one database under concurrent load; one is killed mid-way.

Both run the API and the controllers. Creates, scale-ups, scale-downs and deletes go to
either replica from several threads; then one replica gets SIGKILL while work is in
flight. The survivor takes over the dead one's leases once they expire and every cluster
converges: the ones still wanted are Ready with exactly their GPUs, the deleted ones are
gone, no host serves two clusters, no acknowledged create is lost.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from tests.support.databases import fresh_database_url
from tests.support.server import SMALL_FLEET, ServerProcess

CLUSTERS = "/v1/compute/clusters"
BODY = {
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


class Load:
    """Random operations against the replicas; remembers what was acknowledged."""

    def __init__(self, replicas: list[ServerProcess], seed: int):
        self.replicas = replicas
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.wanted: dict[str, int] = {}  # acknowledged clusters not deleted -> num_gpus
        self.deleted: set[str] = set()

    def client(self) -> httpx.Client:
        with self.lock:
            alive = [r for r in self.replicas if r.process and r.process.poll() is None]
            replica = self.rng.choice(alive)
        return replica.client()

    def step(self, i: int) -> None:
        with self.lock:
            choice = self.rng.random()
            known = sorted(self.wanted)
            target = self.rng.choice(known) if known else None
            gpus = self.rng.choice([8, 16, 24])
        try:
            with self.client() as http:
                if target is None or choice < 0.45:
                    self._create(http, i, gpus)
                elif choice < 0.8:
                    self._scale(http, target, gpus)
                else:
                    self._delete(http, target)
        except httpx.TransportError:
            pass  # the replica was killed under us; not acknowledged, nothing to check

    def _create(self, http: httpx.Client, i: int, gpus: int) -> None:
        r = http.post(CLUSTERS, json={**BODY, "cluster_name": f"c{i}", "num_gpus": gpus})
        assert r.status_code in (200, 409), r.text
        if r.status_code == 200:
            with self.lock:
                self.wanted[r.json()["cluster_id"]] = gpus

    def _scale(self, http: httpx.Client, cluster_id: str, gpus: int) -> None:
        r = http.put(f"{CLUSTERS}/{cluster_id}", json={"num_gpus": gpus})
        assert r.status_code in (200, 400, 404, 409), r.text
        if r.status_code == 200:
            with self.lock:
                if cluster_id in self.wanted:
                    self.wanted[cluster_id] = gpus

    def _delete(self, http: httpx.Client, cluster_id: str) -> None:
        r = http.delete(f"{CLUSTERS}/{cluster_id}")
        assert r.status_code in (200, 404), r.text
        if r.status_code == 200:
            with self.lock:
                self.wanted.pop(cluster_id, None)
                self.deleted.add(cluster_id)


def converged(http: httpx.Client, load: Load) -> bool:
    clusters = {c["cluster_id"]: c for c in http.get(CLUSTERS).json()["clusters"]}
    if set(clusters) != set(load.wanted):
        return False
    for cluster_id, gpus in load.wanted.items():
        cluster = clusters[cluster_id]
        workers = cluster["gpu_worker_nodes"]
        if cluster["status"] != "Ready" or cluster["num_gpus"] != gpus:
            return False
        if len(workers) != gpus // 8 or any(w["status"] != "Running" for w in workers):
            return False
    return True


def test_a_surviving_replica_converges_everything_after_the_other_is_killed(tmp_path: Path):
    database = fresh_database_url(tmp_path)
    first = ServerProcess(tmp_path / "a", fleet=SMALL_FLEET, database_url=database, time_scale=300)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    second = ServerProcess(tmp_path / "b", fleet=SMALL_FLEET, database_url=database, time_scale=300)
    second.api_key = first.api_key
    with first, second:
        load = Load([first, second], seed=7)
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(load.step, range(40)))
            first.kill()
            list(pool.map(load.step, range(40, 60)))
        with second.client() as http:
            deadline = time.monotonic() + 90
            while not converged(http, load) and time.monotonic() < deadline:
                time.sleep(0.25)
            assert converged(http, load), "the survivor did not converge in 90 s"
            clusters = http.get(CLUSTERS).json()["clusters"]
            hosts = http.get("/admin/v1/fleet/hosts").json()["hosts"]
            for gone in load.deleted:
                assert http.get(f"{CLUSTERS}/{gone}").status_code == 404
    serving = [w["host_name"] for c in clusters for w in c["gpu_worker_nodes"]]
    assert len(serving) == len(set(serving)), "a host serves two nodes"
    owners: dict[str, Any] = {h["name"]: h["cluster_id"] for h in hosts}
    by_cluster = Counter(owners[name] for name in serving)
    assert by_cluster == Counter({cid: gpus // 8 for cid, gpus in load.wanted.items()}), (
        "the hosts the fleet marks as held are exactly the ones serving"
    )
    assert sum(1 for owner in owners.values() if owner) == len(serving)

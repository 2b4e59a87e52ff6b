"""A tenant whose clients ask for a multi-MB cluster list and never read the answer cannot
lock the other tenants out (issue 11, point 1).

Project `alpha` books a few hundred far-future clusters, a dozen of them Slurm clusters
with 256 KiB of startup scripts, so its unpaginated list is several MB; it then holds 32 raw
connections that send `GET /v1/compute/clusters` and never read. Meanwhile project `beta`
creates, reads, lists and deletes a cluster: every request answers within 2 s and the
controllers bring the cluster up and tear it down. The list holds no database connection
while its bytes wait for the client, a key has a bounded number of responses in flight
(the rest get 429 in the spec's envelope), a stalled client is cut off after the send
timeout, and the server's memory does not grow with one copy of the list per reader.

Runs against a real server process on SQLite or PostgreSQL (`CLUSTERPLANE_TEST_DATABASE`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import SMALL_FLEET, ServerProcess
from tests.support.stalled import StalledReader

READERS = 32
BOOKINGS = 300
HEAVY = 20  # Slurm bookings carrying 256 KiB of startup scripts each (the most kept)
MAX_INFLIGHT_PER_KEY = 8  # the server's default
SLO = 2.0  # seconds any request of the other tenant may take
LIST = "/v1/compute/clusters"
SCRIPTS = ("worker_prolog", "worker_epilog", "controller_prolog", "controller_epilog")


def _tenant(admin: httpx.Client, name: str) -> str:
    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = admin.post(f"/admin/v1/{path}", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    user = post("users", {"name": name})["id"]
    project = post("projects", {"name": name, "slug": name})["id"]
    key: str = post("api-keys", {"user_id": user, "project_id": project})["api_key"]
    return key


def _booking(i: int) -> dict[str, Any]:
    """An 8-GPU, one-day booking on day 30 + i from now (no two overlap)."""
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30 + i)
    body: dict[str, Any] = {
        "cluster_name": f"booking-{i}",
        "billing_type": "SCHEDULED_CAPACITY",
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "region": "test-1",
        "nvidia_version_id": "cu128-drv570-ubuntu2204",
        "reservation_start_time": start.isoformat(),
        "reservation_end_time": (start + timedelta(days=1)).isoformat(),
    }
    if i < HEAVY:
        script = "#!/bin/sh\n" + f"echo {i} {'x' * 70}\n" * 800
        body["cluster_type"] = "SLURM"
        body["slurm_shm_size_gib"] = 64
        body["cluster_config"] = {
            "load_balancer": "NONE",
            "slurm_startup_scripts": {name: script[:65_000] for name in SCRIPTS},
        }
    return body


@pytest.fixture
def crowded(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, str, int]]:
    """A server whose project alpha has a multi-MB list: (server, alpha's key, beta's key,
    the list's size in bytes)."""
    with ServerProcess(tmp_path, fleet=SMALL_FLEET) as server, server.client() as admin:
        key_a, key_b = _tenant(admin, "alpha"), _tenant(admin, "beta")
        headers = {"Authorization": f"Bearer {key_a}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as alpha:

            def book(i: int) -> None:
                response = alpha.post(LIST, json=_booking(i))
                assert response.status_code == 200, response.text

            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(book, range(BOOKINGS)))
            listed = alpha.get(LIST)
        assert listed.status_code == 200
        assert len(listed.json()["clusters"]) == BOOKINGS
        assert len(listed.content) > 4_000_000
        yield server, key_a, key_b, len(listed.content)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Timed:
    """A client whose every request must answer within the SLO."""

    def __init__(self, http: httpx.Client):
        self.http = http
        self.slowest = 0.0

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        try:
            response = self.http.request(method, path, timeout=SLO + 1, **kwargs)
        except httpx.TimeoutException:
            raise AssertionError(f"{method} {path}: no answer within {SLO + 1} s") from None
        took = time.monotonic() - started
        self.slowest = max(self.slowest, took)
        assert took < SLO, f"{method} {path} took {took:.2f} s"
        assert response.status_code < 500, response.text
        return response


def _until(timed: Timed, path: str, done: Any, deadline_s: float = 120.0) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    while True:
        response = timed("GET", path)
        if done(response):
            return response
        assert time.monotonic() < deadline, f"{path} never got there: {response.text[:300]}"
        time.sleep(0.2)


def _other_tenant_works(server: ServerProcess, key_b: str) -> float:
    """Beta's whole cluster life, every request within the SLO; the slowest, in seconds."""
    headers = {"Authorization": f"Bearer {key_b}"}
    with httpx.Client(base_url=server.base_url, headers=headers) as http:
        timed = Timed(http)
        created = timed(
            "POST",
            LIST,
            json={
                "cluster_name": "beta-1",
                "billing_type": "ON_DEMAND",
                "gpu_type": "L40_PCIE",
                "num_gpus": 8,
                "region": "test-2",
                "nvidia_version_id": "cu126-drv560-ubuntu2204",
            },
        )
        assert created.status_code == 200, created.text
        path = f"{LIST}/{created.json()['cluster_id']}"
        assert timed("GET", path).status_code == 200
        listed = timed("GET", LIST).json()["clusters"]
        assert [c["cluster_name"] for c in listed] == ["beta-1"]
        _until(timed, path, lambda r: r.json()["status"] == "Ready")
        assert timed("DELETE", path).status_code == 200
        _until(timed, path, lambda r: r.status_code == 404)
        assert timed("GET", "/readyz").status_code == 200
        return timed.slowest


def test_stalled_readers_of_a_huge_list_do_not_lock_out_other_tenants(
    crowded: tuple[ServerProcess, str, str, int],
):
    server, key_a, key_b, list_bytes = crowded
    assert server.process is not None
    rss_before = _rss_bytes(server.process.pid)
    readers = [StalledReader(server.port, LIST, key_a) for _ in range(READERS)]
    try:
        time.sleep(3.0)  # the admitted lists are being built and start to stall
        _other_tenant_works(server, key_b)
        rss_growth = _rss_bytes(server.process.pid) - rss_before

        statuses = Counter(r.status() for r in readers)
        assert set(statuses) <= {200, 429}, statuses
        assert statuses[200] <= MAX_INFLIGHT_PER_KEY, statuses
        refused = next(r for r in readers if r.status() == 429)
        _, headers, body = refused.response()
        assert set(body["error"]) == {"message", "type", "param", "code"}, body  # type: ignore[index]
        assert float(headers["retry-after"]) > 0
        # Memory follows the admitted few, not the readers: building one answer takes a
        # few times the list's size (rows, their JSON, the encoded bytes), kept as RSS.
        assert rss_growth < (MAX_INFLIGHT_PER_KEY + 2) * list_bytes * 4, (rss_growth, list_bytes)
    finally:
        for reader in readers:
            reader.close()


def test_a_client_that_stops_reading_is_cut_off_after_the_send_timeout(tmp_path: Path):
    with (
        ServerProcess(tmp_path, fleet=SMALL_FLEET, extra_args=("--send-timeout", "2")) as server,
        server.client() as admin,
    ):
        key = _tenant(admin, "alpha")
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as alpha:
            for i in range(HEAVY):
                assert alpha.post(LIST, json=_booking(i)).status_code == 200
            list_bytes = len(alpha.get(LIST).content)
        assert list_bytes > 4_000_000
        reader = StalledReader(server.port, LIST, key)
        try:
            assert reader.status() == 200
            time.sleep(5.0)  # past the send timeout, reading nothing
            closed, received = reader.cut_off(timeout=5.0)
            assert closed and received < list_bytes, (closed, received, list_bytes)
            # The key's slot was given back: its next list is answered in full.
            with httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}
            ) as alpha:
                assert len(alpha.get(LIST, timeout=30).content) == list_bytes
        finally:
            reader.close()

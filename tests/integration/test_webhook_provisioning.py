"""A receiver that hangs does not slow cluster provisioning, measured on a real server.

The server runs fleet time x600 (a bring-up of about 20 fleet minutes takes seconds). Three
clusters are brought up without any webhook, then three more while a fleet-wide and a
project endpoint, subscribed to every event, point at a receiver that never answers
(each attempt is cut off after `timeout_seconds`). Were deliveries sent from the
engine's passes, every one of the dozens of events of a bring-up would stall it for the
timeout; sent from the outbox, bring-up takes as long as without them.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.receivers import Receiver
from tests.support.server import SMALL_FLEET, ServerProcess

CONFIG = """
[webhooks]
http_networks = ["127.0.0.0/8"]
timeout_seconds = 5.0
poll_interval_seconds = 0.05
"""
CLUSTER = {
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
CLUSTERS_PER_ROUND = 3


def bring_up_seconds(http: httpx.Client, prefix: str) -> float:
    """Wall seconds from creating `CLUSTERS_PER_ROUND` clusters to all of them Ready."""
    started = time.monotonic()
    ids = []
    for n in range(CLUSTERS_PER_ROUND):
        created = http.post(
            "/v1/compute/clusters", json={**CLUSTER, "cluster_name": f"{prefix}{n}"}
        )
        assert created.status_code == 200, created.text
        ids.append(created.json()["cluster_id"])
    waiting = set(ids)
    deadline = started + 120
    while waiting and time.monotonic() < deadline:
        for cluster_id in sorted(waiting):
            if http.get(f"/v1/compute/clusters/{cluster_id}").json()["status"] == "Ready":
                waiting.discard(cluster_id)
        time.sleep(0.05)
    assert not waiting, f"{sorted(waiting)} not Ready within 120 s"
    return time.monotonic() - started


@pytest.mark.slow
def test_a_hanging_receiver_does_not_slow_cluster_provisioning(tmp_path: Path):
    config = tmp_path / "webhooks.toml"
    config.write_text(CONFIG)
    server = ServerProcess(tmp_path, fleet=SMALL_FLEET, extra_args=("--config", str(config)))
    with server, Receiver("hang") as receiver, server.client() as http:
        baseline = bring_up_seconds(http, "plain")
        for extra in ({"fleet": True}, {}):
            hook = http.post(
                "/v1/clusterplane/webhooks", json={"url": receiver.url(), "kinds": ["*"], **extra}
            )
            assert hook.status_code == 200, hook.text
        hanging = bring_up_seconds(http, "hooked")
        stalled = len(receiver.received)
    print(
        f"bring-up of {CLUSTERS_PER_ROUND} clusters: {baseline:.2f} s without webhooks, "
        f"{hanging:.2f} s with a hanging receiver ({stalled} deliveries hung)"
    )
    assert stalled >= 4, "deliveries were attempted and hung while clusters came up"
    assert hanging <= 1.5 * baseline + 1.0

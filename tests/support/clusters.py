"""Clusters for tests: the smallest valid create body on the small fleet, and storing
their documents as a running refresher would."""

from __future__ import annotations

from typing import Any

from tests.support.engine import Engine

CREATE: dict[str, Any] = {
    "cluster_name": "test",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


# Every phase of a bring-up, in order.
BRING_UP = [
    "QUEUED",
    "WAITING_FOR_CONTROL_PLANE_NODES",
    "WAITING_FOR_SUBNET",
    "WAITING_FOR_DATA_PLANE_NODES",
    "INSTALLING_DRIVERS",
    "RUNNING_ACCEPTANCE_TESTS",
    "RUNNING_NCCL_TESTS",
    "READY",
]


def cluster_body(**overrides: Any) -> dict[str, Any]:
    """A create body on the small fleet, with `overrides` applied."""
    return {**CREATE, **overrides}


def store_documents(engine: Engine) -> None:
    """Run the documents refresher until every quiet cluster's document is stored (it
    renders a cluster once the cluster was quiet for a loop)."""
    for _ in range(3):
        engine.app.manager.documents.refresh()

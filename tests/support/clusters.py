"""Request bodies of clusters for tests: the smallest valid create on the small fleet."""

from __future__ import annotations

from typing import Any

CREATE: dict[str, Any] = {
    "cluster_name": "test",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def cluster_body(**overrides: Any) -> dict[str, Any]:
    """A create body on the small fleet, with `overrides` applied."""
    return {**CREATE, **overrides}

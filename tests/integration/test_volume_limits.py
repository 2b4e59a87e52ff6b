"""Shared-volume limits: the operator's size range and each region's storage capacity.

small.yaml gives test-1 100 TiB and test-2 10 TiB of shared storage; the default settings
allow volumes of 1 to 1024 TiB.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine import WHOLE_REGION, Engine, make_engine

VOLUMES = "/v1/compute/clusters/storage/volumes"
CLUSTER = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """One project may use the whole region here: these tests are about the region's own
    limits, not the per-project quotas (tests/integration/test_tenant_capacity.py)."""
    yield from make_engine(tmp_path, capacity=WHOLE_REGION)


def volume(engine: Engine, size: int, region: str = "test-1") -> dict[str, Any]:
    response = engine.client.post(
        VOLUMES,
        json={"volume_name": "data", "size_tib": size, "region": region},
        headers=engine.headers(),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_volume_larger_than_the_regions_free_storage_is_a_409_that_says_what_is_free(
    engine: Engine,
):
    volume(engine, 60)
    before = engine.dump()
    response = engine.client.post(
        VOLUMES,
        json={"volume_name": "big", "size_tib": 41, "region": "test-1"},
        headers=engine.headers(),
    )
    assert response.status_code == 409
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["type"] == "capacity_unavailable" and error["param"] == "size_tib"
    assert "40 TiB of shared storage free" in error["message"]
    assert engine.dump() == before
    assert volume(engine, 40)["size_tib"] == 40, "exactly what is free still fits"


def test_each_region_has_its_own_storage_capacity(engine: Engine):
    volume(engine, 100)
    assert volume(engine, 10, region="test-2")["size_tib"] == 10
    response = engine.client.post(
        VOLUMES,
        json={"volume_name": "x", "size_tib": 1, "region": "test-2"},
        headers=engine.headers(),
    )
    assert response.status_code == 409
    assert "region test-2 has 0 TiB" in response.json()["error"]["message"]


def test_growing_past_the_regions_capacity_is_refused_and_keeps_the_size(engine: Engine):
    grown = volume(engine, 50)
    volume(engine, 30)
    before = engine.dump()
    response = engine.client.put(
        VOLUMES, json={"volume_id": grown["volume_id"], "size_tib": 71}, headers=engine.headers()
    )
    assert response.status_code == 409
    assert "20 TiB of shared storage free" in response.json()["error"]["message"]
    assert engine.dump() == before
    ok = engine.client.put(
        VOLUMES, json={"volume_id": grown["volume_id"], "size_tib": 70}, headers=engine.headers()
    )
    assert ok.status_code == 200 and ok.json()["size_tib"] == 70


def test_a_volume_over_the_operators_maximum_size_is_a_400(engine: Engine):
    before = engine.dump()
    response = engine.client.post(
        VOLUMES,
        json={"volume_name": "x", "size_tib": 2048, "region": "test-1"},
        headers=engine.headers(),
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "size_tib"
    assert "1 to 1024 TiB" in response.json()["error"]["message"]
    assert engine.dump() == before


def test_a_deleted_volume_frees_its_storage_once_the_driver_has_removed_it(engine: Engine):
    first = volume(engine, 100)
    engine.advance(900, step=20)
    deleted = engine.client.delete(f"{VOLUMES}/{first['volume_id']}", headers=engine.headers())
    assert deleted.status_code == 200
    refused = engine.client.post(
        VOLUMES,
        json={"volume_name": "x", "size_tib": 1, "region": "test-1"},
        headers=engine.headers(),
    )
    assert refused.status_code == 409, "a volume being deleted still holds its space"
    engine.advance(900, step=20)
    assert volume(engine, 100)["size_tib"] == 100


def test_an_inline_shared_volume_that_does_not_fit_refuses_the_whole_cluster(engine: Engine):
    volume(engine, 95)
    before = engine.dump()
    response = engine.client.post(
        "/v1/compute/clusters",
        json={
            **CLUSTER,
            "shared_volume": {"volume_name": "d", "size_tib": 6, "region": "test-1"},
        },
        headers=engine.headers(),
    )
    assert response.status_code == 409
    assert response.json()["error"]["param"] == "shared_volume.size_tib"
    assert engine.dump() == before

"""Conformance: what the `together` SDK (3.1.1) shows of billing types, capacity pools and
preemptible GPUs, against a real server process (fleet time x600)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import together

from tests.compat.support import (
    H100_DRIVER_ID,
    H100_REGION,
    create_tenant,
    wait_for_cluster,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.compat

COMMON = {
    "gpu_type": "H100_SXM",
    "region": H100_REGION,
    "nvidia_version_id": H100_DRIVER_ID,
}


@pytest.fixture(scope="module")
def client(module_server: ServerProcess) -> Iterator[together.Together]:
    with together.Together(base_url=module_server.base_url, api_key=module_server.api_key) as c:
        yield c


def test_a_reserved_cluster_shows_its_reservation_and_can_be_extended(
    client: together.Together,
) -> None:
    created = client.clusters.create(
        cluster_name="sdk-reserved", billing_type="RESERVED", duration_days=2, num_gpus=8, **COMMON
    )
    assert created.billing_type == "RESERVED"
    assert created.duration_hours == 48 and created.num_reserved_gpus == 8
    assert created.reservation_end_time is not None and created.created_at is not None
    assert created.reservation_end_time - created.created_at == timedelta(days=2)
    later = created.reservation_end_time + timedelta(days=1)
    updated = client.clusters.update(created.cluster_id, reservation_end_time=later)
    assert updated.reservation_end_time == later
    client.clusters.delete(created.cluster_id)


def test_a_scheduled_cluster_shows_its_window_and_waits_without_nodes(
    client: together.Together,
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=60)
    created = client.clusters.create(
        cluster_name="sdk-scheduled",
        billing_type="SCHEDULED_CAPACITY",
        num_gpus=8,
        reservation_start_time=start,
        reservation_end_time=start + timedelta(days=1),
        **COMMON,
    )
    assert created.status == "Scheduled"
    assert [p.phase for p in created.phase_transitions] == ["CLUSTER_PHASE_SCHEDULED"]
    assert created.gpu_worker_nodes == []
    assert created.reservation_start_time == start
    assert created.num_reserved_gpus == 0 and created.num_capacity_pool_gpus == 0
    client.clusters.delete(created.cluster_id)


def test_a_pool_cluster_reports_the_gpus_it_draws_from_the_pool(
    module_server: ServerProcess,
) -> None:
    tenant = create_tenant(module_server, "sdk-pool-owner")
    now = datetime.now(UTC) - timedelta(hours=1)
    with module_server.client() as admin:
        response = admin.post(
            "/admin/v1/capacity/pools",
            json={
                "name": "sdk-pool",
                "region": H100_REGION,
                "gpu_type": "H100_SXM",
                "project_id": tenant.project_id,
                "starts_at": now.isoformat(),
                "ends_at": (now + timedelta(days=365)).isoformat(),
                "num_hosts": 2,
            },
        )
        assert response.status_code == 200, response.text
        pool_id = response.json()["id"]
    with together.Together(base_url=module_server.base_url, api_key=tenant.api_key) as owner:
        created = owner.clusters.create(
            cluster_name="sdk-pool",
            billing_type="ON_DEMAND",
            num_gpus=24,
            capacity_pool_id=pool_id,
            **COMMON,
        )
        assert created.capacity_pool_id == pool_id
        assert created.num_gpus == 24 and created.num_capacity_pool_gpus == 16
        owner.clusters.delete(created.cluster_id)


def test_preemptible_gpus_show_the_target_and_what_is_live(client: together.Together) -> None:
    created = client.clusters.create(
        cluster_name="sdk-preemptible",
        billing_type="ON_DEMAND",
        num_gpus=8,
        num_preemptible_gpus=8,
        **COMMON,
    )
    assert created.desired_preemptible_gpus == 8 and created.allocated_preemptible_gpus == 0
    ready = wait_for_cluster(
        client,
        created.cluster_id,
        lambda c: c.status == "Ready" and c.allocated_preemptible_gpus == 8,
        what="the preemptible node to be allocated",
    )
    names = [n.node_id for n in ready.gpu_worker_nodes]
    assert sum("gpu-preemptible-dp" in n for n in names) == 1 and len(names) == 2
    client.clusters.delete(created.cluster_id)

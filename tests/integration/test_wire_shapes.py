"""What the server sends matches the wire models and the official SDK's own types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from together.types import Cluster, ClusterListRegionsResponse
from together.types.clusters import ClusterStorage, Remediation

from clusterplane.api.schemas import (
    ClusterResponse,
    ClusterStorageResponse,
    RegionListResponse,
    RemediationResponse,
)
from tests.integration.test_lifecycle import create, get
from tests.support.engine import Engine


def required_fields(model: type[BaseModel]) -> set[str]:
    return {name for name, field in model.model_fields.items() if field.is_required()}


def assert_complete(body: dict[str, Any], sdk_model: type[BaseModel]) -> None:
    missing = required_fields(sdk_model) - body.keys()
    assert not missing, f"{sdk_model.__name__} lacks required {missing}"


def busy_cluster(engine: Engine) -> dict[str, Any]:
    cluster = create(
        engine,
        cluster_type="SLURM",
        slurm_shm_size_gib=64,
        num_gpus=24,
        shared_volume={"volume_name": "data", "size_tib": 1, "region": "test-1"},
        add_ons=[{"name": "web", "add_on_type": "slurm_web"}],
        cluster_config={"load_balancer": "NGINX", "observability": {"enabled": True}},
        oidc_config={
            "issuer_url": "https://issuer.example.com",
            "client_id": "k8s",
            "username_claim": "email",
            "username_prefix": "oidc:",
            "group_claim": "groups",
            "group_prefix": "oidc:",
        },
    )
    engine.advance(3 * 3600, step=60)
    cid = cluster["cluster_id"]
    worker = get(engine, cid)["gpu_worker_nodes"][0]
    engine.client.post(
        f"/v1/compute/clusters/{cid}/instances/{worker['instance_id']}/remediations",
        json={"mode": "REMEDIATION_MODE_REBOOT_VM"},
        headers=engine.headers(),
    )
    engine.client.put(
        f"/v1/compute/clusters/{cid}", json={"num_gpus": 16}, headers=engine.headers()
    )
    engine.advance(1800, step=60)
    return get(engine, cid)


def test_a_cluster_with_every_feature_in_use_has_every_field_the_sdk_requires(engine: Engine):
    body = busy_cluster(engine)
    ClusterResponse.model_validate(body)
    parsed = Cluster.model_validate(body)
    assert_complete(body, Cluster)
    assert parsed.cluster_type == "SLURM" and parsed.num_gpus == 16
    assert body["add_ons"][0]["add_on_type"] == "slurm_web"
    assert body["cluster_config"]["load_balancer"] == "NGINX"
    assert body["volumes"][0]["status"] == "bound"
    for worker in body["gpu_worker_nodes"] + body["deleted_gpu_worker_nodes"]:
        assert worker["slurm_worker_hostname"].endswith(".slurm-compute.slurm")
        assert_complete(worker, type(parsed.gpu_worker_nodes[0]))
    assert body["deleted_gpu_worker_nodes"], "the scale-down left a deleted node"
    latest = next(
        w["latest_remediation"] for w in body["gpu_worker_nodes"] if w["latest_remediation"]
    )
    assert_complete(latest, Remediation)
    for node in body["control_plane_nodes"]:
        assert_complete(node, type(parsed.control_plane_nodes[0]))


def test_every_node_carries_node_name_as_togethers_openapi_file_requires(engine: Engine):
    body = busy_cluster(engine)
    nodes = body["control_plane_nodes"] + body["gpu_worker_nodes"]
    nodes += body["deleted_gpu_worker_nodes"]
    assert nodes
    for node in nodes:
        assert node["node_name"] == node["node_id"] and node["node_name"]
    named = {e["node_id"] for e in body["node_lifecycle_events"]}
    assert named <= {n["node_name"] for n in nodes}


def test_every_timestamp_on_the_wire_is_rfc3339_utc_with_z(engine: Engine):
    body = busy_cluster(engine)
    stamps = [p["transition_time"] for p in body["phase_transitions"]]
    stamps += [body["created_at"], body["first_ready_at"]]
    stamps += [e["timestamp"] for e in body["node_lifecycle_events"]]
    assert stamps and all(s.endswith("Z") and "T" in s for s in stamps)


def test_storage_remediation_and_region_bodies_validate_as_the_sdk_types(engine: Engine):
    headers = engine.headers()
    volume = engine.client.post(
        "/v1/compute/clusters/storage/volumes",
        json={"volume_name": "v", "size_tib": 1, "region": "test-1"},
        headers=headers,
    ).json()
    ClusterStorageResponse.model_validate(volume)
    assert_complete(volume, ClusterStorage)
    regions = engine.client.get("/v1/compute/regions", headers=headers).json()
    RegionListResponse.model_validate(regions)
    parsed = ClusterListRegionsResponse.model_validate(regions)
    assert {r.name for r in parsed.regions} == {"test-1", "test-2"}
    cluster = create(engine)
    engine.advance(3 * 3600, step=60)
    worker = get(engine, cluster["cluster_id"])["gpu_worker_nodes"][0]
    remediation = engine.client.post(
        f"/v1/compute/clusters/{cluster['cluster_id']}/instances/{worker['instance_id']}"
        "/remediations",
        json={"mode": "REMEDIATION_MODE_VM_ONLY", "reason": "flaky"},
        headers=headers,
    ).json()
    RemediationResponse.model_validate(remediation)
    assert_complete(remediation, Remediation)

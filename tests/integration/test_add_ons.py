"""Add-ons and cluster_config on a running cluster: merged on update, applied by the
driver, reported in each add-on's `state` once applied."""

from __future__ import annotations

from typing import Any

from tests.support.engine import Engine

CREATE = {
    "cluster_name": "addons",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def create(engine: Engine, **overrides: Any) -> dict[str, Any]:
    response = engine.client.post(
        "/v1/compute/clusters", json={**CREATE, **overrides}, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def get(engine: Engine, cluster_id: str) -> dict[str, Any]:
    body: dict[str, Any] = engine.client.get(
        f"/v1/compute/clusters/{cluster_id}", headers=engine.headers()
    ).json()
    return body


def update(engine: Engine, cluster_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = engine.client.put(
        f"/v1/compute/clusters/{cluster_id}", json=body, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def states(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a["state"] for a in cluster["add_ons"]}


def test_add_ons_are_pending_until_the_running_cluster_has_them_applied(engine: Engine):
    cluster = create(
        engine,
        add_ons=[
            {"name": "headlamp", "add_on_type": "headlamp"},
            {"name": "dash", "add_on_type": "dashboard"},
        ],
    )
    assert states(cluster) == {"headlamp": {}, "dash": {}}
    engine.advance(3 * 3600, step=60)
    ready = get(engine, cluster["cluster_id"])
    assert ready["status"] == "Ready"
    assert states(ready) == {"headlamp": {"headlamp": {}}, "dash": {"dashboard": {}}}


def test_an_update_is_applied_again_and_a_disabled_add_on_leaves_the_list(engine: Engine):
    cluster_id = create(engine, add_ons=[{"name": "headlamp", "add_on_type": "headlamp"}])[
        "cluster_id"
    ]
    engine.advance(3 * 3600, step=60)
    added = update(
        engine,
        cluster_id,
        {"add_ons": [{"name": "ingress", "config": {"ingress": {"enabled": True}}}]},
    )
    assert states(added) == {"headlamp": {"headlamp": {}}, "ingress": {}}, "ingress pending"
    engine.advance(60, step=10)
    assert states(get(engine, cluster_id)) == {
        "headlamp": {"headlamp": {}},
        "ingress": {"ingress": {}},
    }
    off = update(
        engine,
        cluster_id,
        {"add_ons": [{"name": "headlamp", "config": {"headlamp": {"enabled": False}}}]},
    )
    assert [a["name"] for a in off["add_ons"]] == ["ingress"]


def test_a_cluster_config_update_keeps_the_scripts_it_does_not_name(engine: Engine):
    cluster_id = create(
        engine,
        cluster_type="SLURM",
        slurm_shm_size_gib=64,
        cluster_config={
            "load_balancer": "NONE",
            "slurm_startup_scripts": {"worker_prolog": "echo pro", "worker_epilog": "echo epi"},
            "observability": {"enabled": True},
        },
    )["cluster_id"]
    updated = update(
        engine,
        cluster_id,
        {
            "cluster_config": {
                "load_balancer": "NGINX",
                "slurm_startup_scripts": {"worker_prolog": "echo new"},
            }
        },
    )
    assert updated["cluster_config"] == {
        "load_balancer": "NGINX",
        "slurm_startup_scripts": {"worker_prolog": "echo new", "worker_epilog": "echo epi"},
        "observability": {"enabled": True},
    }
    assert get(engine, cluster_id)["cluster_config"] == updated["cluster_config"]

"""The cluster lifecycle on a manual clock: phases, nodes, scaling, deletion, restarts."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from clusterplane.clock import utc
from clusterplane.db.engine import transaction
from clusterplane.db.rows import ClusterRow, NodeRow
from tests.support.clusters import BRING_UP
from tests.support.engine import Engine, make_engine

CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
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
    response = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def phases(cluster: dict[str, Any]) -> list[str]:
    return [p["phase"].removeprefix("CLUSTER_PHASE_") for p in cluster["phase_transitions"]]


def when(text: str) -> datetime:
    return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def test_a_new_cluster_walks_every_bring_up_phase_in_order_and_becomes_ready(engine: Engine):
    cluster = create(engine)
    assert cluster["status"] == "WaitingForControlPlaneNodes"
    assert phases(cluster) == ["QUEUED"]
    engine.advance(3 * 3600, step=60)
    cluster = get(engine, cluster["cluster_id"])
    assert cluster["status"] == "Ready"
    assert phases(cluster) == BRING_UP
    times = [when(p["transition_time"]) for p in cluster["phase_transitions"]]
    assert times == sorted(times)
    assert times[-1] - times[0] > timedelta(minutes=10), "bring-up takes minutes, not seconds"
    assert cluster["first_ready_at"] == cluster["phase_transitions"][-1]["transition_time"]


def test_ready_clusters_have_real_nodes_with_facts_from_the_fleet(engine: Engine):
    cluster_id = create(engine)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    cluster = get(engine, cluster_id)
    workers = cluster["gpu_worker_nodes"]
    assert len(workers) == 2 and len(cluster["control_plane_nodes"]) == 3
    owners = engine.host_owners()
    for worker in workers:
        assert owners[worker["host_name"]] == cluster_id
        assert worker["num_gpus"] == 8 and worker["num_cpu_cores"] > 0
        assert worker["instance_id"] and worker["networks"][0].startswith("10.201.")
        assert worker["status"] == "Running"
        assert [p["phase"] for p in worker["phase_transitions"]] == [
            "NODE_PHASE_PENDING",
            "NODE_PHASE_SCHEDULING",
            "NODE_PHASE_BOOTING",
            "NODE_PHASE_BOOTSTRAPPING",
            "NODE_PHASE_RUNNING",
        ]
    assert len({w["host_name"] for w in workers}) == 2
    assert sum(1 for owner in owners.values() if owner == cluster_id) == 2


def test_workers_of_one_cluster_share_a_rack_when_one_fits(engine: Engine):
    cluster_id = create(engine, num_gpus=32)["cluster_id"]
    hosts = {w["host_name"] for w in get(engine, cluster_id)["gpu_worker_nodes"]}
    racks = {name.split("-")[1] for name in hosts}
    assert len(hosts) == 4 and len(racks) == 1


def test_kube_config_is_handed_out_only_once_the_control_plane_runs(engine: Engine):
    cluster_id = create(engine)["cluster_id"]
    assert get(engine, cluster_id)["kube_config"] == ""
    engine.advance(3 * 3600, step=60)
    cluster = get(engine, cluster_id)
    assert cluster["control_plane_ready"] is True
    assert len(cluster["kube_config"]) > 100


def test_scaling_up_adds_nodes_near_the_existing_ones_and_reports_scaled_up(engine: Engine):
    cluster_id = create(engine)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    response = engine.client.put(
        f"/v1/compute/clusters/{cluster_id}", json={"num_gpus": 24}, headers=engine.headers()
    )
    assert response.status_code == 200 and response.json()["num_gpus"] == 24
    assert len(response.json()["gpu_worker_nodes"]) == 3
    engine.advance(3600, step=20)
    cluster = get(engine, cluster_id)
    assert [w["status"] for w in cluster["gpu_worker_nodes"]] == ["Running"] * 3
    assert cluster["status"] == "Ready"
    reasons = [e["reason"] for e in cluster["node_lifecycle_events"]]
    assert reasons == ["TogetherScaledUp"]


def test_scaling_down_drains_the_newest_nodes_and_keeps_them_as_deleted(engine: Engine):
    cluster_id = create(engine, num_gpus=32)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    before = get(engine, cluster_id)["gpu_worker_nodes"]
    response = engine.client.put(
        f"/v1/compute/clusters/{cluster_id}", json={"num_gpus": 16}, headers=engine.headers()
    )
    draining = [w for w in response.json()["gpu_worker_nodes"] if w["marked_for_deletion"]]
    assert {w["node_id"] for w in draining} == {w["node_id"] for w in before[2:]}
    assert all(w["status"] == "Draining" for w in draining)
    engine.advance(1800, step=20)
    cluster = get(engine, cluster_id)
    assert [w["node_id"] for w in cluster["gpu_worker_nodes"]] == [w["node_id"] for w in before[:2]]
    deleted = cluster["deleted_gpu_worker_nodes"]
    assert {w["node_id"] for w in deleted} == {w["node_id"] for w in before[2:]}
    assert all(w["deleted_at"] for w in deleted)
    assert [e["reason"] for e in cluster["node_lifecycle_events"]] == ["TogetherScaledDown"] * 2
    owners = engine.host_owners()
    assert all(owners[w["host_name"]] is None for w in deleted)


def test_deleting_a_cluster_tears_it_down_and_returns_every_host(engine: Engine):
    cluster_id = create(engine, num_gpus=32)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    response = engine.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert response.json() == {"cluster_id": cluster_id}
    assert get(engine, cluster_id)["status"] == "Deleting"
    again = engine.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert again.status_code == 200 and again.json() == {"cluster_id": cluster_id}
    engine.advance(1800, step=20)
    gone = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert gone.status_code == 404
    assert all(owner is None for owner in engine.host_owners().values())


def test_deleting_while_provisioning_stops_the_bring_up(engine: Engine):
    cluster_id = create(engine)["cluster_id"]
    engine.advance(120, step=20)
    engine.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    engine.advance(1800, step=20)
    listed = engine.client.get("/v1/compute/clusters", headers=engine.headers()).json()
    assert listed == {"clusters": []}
    assert all(owner is None for owner in engine.host_owners().values())


def test_a_create_the_fleet_cannot_hold_allocates_nothing(engine: Engine):
    create(engine, num_gpus=64)
    before = engine.dump()
    response = engine.client.post(
        "/v1/compute/clusters", json={**CREATE, "num_gpus": 128}, headers=engine.headers()
    )
    assert response.status_code == 409
    assert "available" in response.json()["error"]["message"]
    assert engine.dump() == before


def test_an_inline_shared_volume_is_provisioned_and_bound_before_ready(engine: Engine):
    body = create(engine, shared_volume={"volume_name": "data", "size_tib": 2, "region": "test-1"})
    assert body["volumes"][0]["status"] == "provisioning"
    engine.advance(3 * 3600, step=60)
    cluster = get(engine, body["cluster_id"])
    assert "WAITING_FOR_SHARED_VOLUME" in phases(cluster)
    assert cluster["volumes"][0]["status"] == "bound"
    engine.client.delete(f"/v1/compute/clusters/{body['cluster_id']}", headers=engine.headers())
    engine.advance(1800, step=20)
    volumes = engine.client.get("/v1/compute/clusters/storage/volumes", headers=engine.headers())
    assert volumes.json() == {"volumes": []}, "an inline volume lives with its cluster"


def test_a_standalone_volume_becomes_available_grows_and_is_deleted(engine: Engine):
    headers = engine.headers()
    path = "/v1/compute/clusters/storage/volumes"
    volume = engine.client.post(
        path, json={"volume_name": "ds", "size_tib": 1, "region": "test-1"}, headers=headers
    ).json()
    assert volume["status"] == "provisioning"
    engine.advance(900, step=20)
    assert engine.client.get(f"{path}/{volume['volume_id']}", headers=headers).json() == {
        **volume,
        "status": "available",
    }
    grown = engine.client.put(
        path, json={"volume_id": volume["volume_id"], "size_tib": 4}, headers=headers
    )
    assert grown.json()["size_tib"] == 4
    cluster = create(engine, volume_id=volume["volume_id"])
    engine.advance(3 * 3600, step=60)
    assert get(engine, cluster["cluster_id"])["volumes"][0]["status"] == "bound"
    engine.client.delete(f"/v1/compute/clusters/{cluster['cluster_id']}", headers=headers)
    engine.advance(1800, step=20)
    assert (
        engine.client.get(f"{path}/{volume['volume_id']}", headers=headers).json()["status"]
        == "available"
    ), "an independent volume outlives its cluster"
    assert engine.client.delete(f"{path}/{volume['volume_id']}", headers=headers).json() == {
        "success": True
    }
    engine.advance(600, step=20)
    assert engine.client.get(f"{path}/{volume['volume_id']}", headers=headers).status_code == 404


def test_a_scheduled_cluster_waits_for_its_window_and_ends_with_it(engine: Engine):
    start = engine.clock.now() + timedelta(hours=2)
    end = start + timedelta(hours=6)
    cluster = create(
        engine,
        billing_type="SCHEDULED_CAPACITY",
        reservation_start_time=start.isoformat(),
        reservation_end_time=end.isoformat(),
    )
    assert cluster["status"] == "Scheduled" and phases(cluster) == ["SCHEDULED"]
    engine.advance(3600, step=60)
    assert get(engine, cluster["cluster_id"])["status"] == "Scheduled"
    engine.advance(3 * 3600, step=30)
    ready = get(engine, cluster["cluster_id"])
    assert ready["status"] == "Ready" and phases(ready)[1] == "QUEUED"
    engine.advance(5 * 3600, step=60)
    gone = engine.client.get(
        f"/v1/compute/clusters/{cluster['cluster_id']}", headers=engine.headers()
    )
    assert gone.status_code == 404, "the cluster is wound down at the end of its window"


def test_a_reserved_cluster_reports_its_reservation(engine: Engine):
    cluster = create(engine, billing_type="RESERVED", duration_days=3)
    assert cluster["duration_hours"] == 72
    assert cluster["num_reserved_gpus"] == 16
    end = when(cluster["reservation_end_time"])
    assert end - when(cluster["created_at"]) == timedelta(days=3)


def test_a_restarted_engine_resumes_every_in_flight_cluster(tmp_path: Path):
    first = make_engine(tmp_path)
    engine = next(first)
    cluster_id = create(engine, num_gpus=32)["cluster_id"]
    engine.advance(600, step=20)
    mid = get(engine, cluster_id)
    assert mid["status"] != "Ready"
    now = engine.clock.now()
    first.close()
    second = make_engine(tmp_path, database_url=engine.database_url, admin_key=engine.admin_key)
    restarted = next(second)
    restarted.clock.set(now)
    restarted.advance(3 * 3600, step=20)
    cluster = get(restarted, cluster_id)
    assert cluster["status"] == "Ready"
    assert len(cluster["gpu_worker_nodes"]) == 4
    assert len(phases(cluster)) == len(set(phases(cluster)))
    second.close()


def test_an_operator_chosen_admin_key_works_as_a_bearer_token(tmp_path: Path):
    chosen = "correct-horse-battery-staple-42"
    gen = make_engine(tmp_path, admin_key=chosen)
    engine = next(gen)
    assert engine.client.get("/v3/whoami", headers=engine.headers(chosen)).status_code == 200
    wrong = engine.client.get("/v3/whoami", headers=engine.headers(chosen + "x"))
    assert wrong.status_code == 401
    gen.close()


def test_a_delete_that_lands_while_a_pass_runs_is_acted_on_at_the_next_pass(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    cluster_id = create(engine)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    controller = next(c for c in engine.app.manager.controllers if c.name == "clusters")
    act = controller._act

    def act_then_delete(snap: Any, now: datetime) -> Any:
        outcome = act(snap, now)
        if snap.cluster.id == cluster_id:  # the client deletes while the pass runs
            reply = engine.client.delete(
                f"/v1/compute/clusters/{cluster_id}", headers=engine.headers()
            )
            assert reply.status_code == 200
        return outcome

    monkeypatch.setattr(controller, "_act", act_then_delete)
    with transaction(engine.app.sessions) as session:
        session.get_one(ClusterRow, cluster_id).next_reconcile_at = engine.clock.now()
    engine.app.manager.run_once()
    monkeypatch.undo()
    with transaction(engine.app.sessions) as session:
        row = session.get_one(ClusterRow, cluster_id)
        assert row.delete_requested_at is not None
        assert row.next_reconcile_at is not None
        assert row.next_reconcile_at <= engine.clock.now()


def test_the_pass_that_takes_a_cluster_out_of_the_queue_boots_its_control_plane(
    engine: Engine,
):
    cluster_id = create(engine)["cluster_id"]
    engine.app.manager.run_once()
    cluster = get(engine, cluster_id)
    assert phases(cluster) == ["QUEUED", "WAITING_FOR_CONTROL_PLANE_NODES"]
    assert [n["status"] for n in cluster["control_plane_nodes"]] == ["Scheduling"] * 3
    assert [n["status"] for n in cluster["gpu_worker_nodes"]] == ["Pending"] * 2


def test_steps_done_at_once_let_the_next_phases_start_in_the_same_pass(instant: Engine):
    cluster_id = create(instant)["cluster_id"]
    reached = []
    for _ in range(3):
        instant.app.manager.run_once()
        reached.append(phases(get(instant, cluster_id))[-1])
    # The control plane runs and the subnet step is done in the first pass; the workers
    # run, and the driver install and the acceptance tests are done in the second.
    assert reached == ["WAITING_FOR_DATA_PLANE_NODES", "RUNNING_NCCL_TESTS", "READY"]
    cluster = get(instant, cluster_id)
    assert phases(cluster) == BRING_UP
    assert cluster["first_ready_at"] == cluster["phase_transitions"][-1]["transition_time"]


def test_a_bring_up_reads_and_writes_its_nodes_without_an_orm_row_per_node(engine: Engine):
    loaded: list[str] = []

    def on_load(row: NodeRow, _: Any) -> None:
        loaded.append(row.node_name)

    event.listen(NodeRow, "load", on_load)
    try:
        cluster_id = create(engine, num_gpus=32)["cluster_id"]
        engine.advance(3 * 3600, step=60)
    finally:
        event.remove(NodeRow, "load", on_load)
    cluster = get(engine, cluster_id)
    assert phases(cluster) == BRING_UP
    assert all(len(n["phase_transitions"]) == 5 for n in cluster["gpu_worker_nodes"])
    assert loaded == []


def test_a_deletion_reads_its_nodes_and_hosts_in_a_few_queries_not_one_per_node(engine: Engine):
    cluster_id = create(engine, num_gpus=64)["cluster_id"]  # 8 workers and a control plane
    engine.advance(3 * 3600, step=60)
    by_key: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if re.search(r"FROM (nodes|hosts)\s+WHERE (nodes|hosts)\.id = ", statement):
            by_key.append(statement)  # one row by its primary key: a read per node

    deleted = engine.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert deleted.status_code == 200, deleted.text
    event.listen(engine.app.engine, "before_cursor_execute", count)
    try:
        engine.advance(600, step=60)
    finally:
        event.remove(engine.app.engine, "before_cursor_execute", count)
    gone = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert gone.status_code == 404
    assert all(owner is None for owner in engine.host_owners().values())
    assert by_key == []

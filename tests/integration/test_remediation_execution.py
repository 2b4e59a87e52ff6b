"""Approved repairs are carried out: reboot, recreate, move to another host, evict."""

from __future__ import annotations

from typing import Any

import pytest

from clusterplane.db.engine import transaction
from clusterplane.db.rows import RemediationRow
from tests.integration.test_lifecycle import create, get
from tests.support.engine import Engine


def ready_cluster(engine: Engine, num_gpus: int = 16) -> dict[str, Any]:
    cluster_id = create(engine, num_gpus=num_gpus)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    cluster = get(engine, cluster_id)
    assert cluster["status"] == "Ready"
    return cluster


def remediate(engine: Engine, cluster: dict[str, Any], mode: str, index: int = 0) -> str:
    worker = cluster["gpu_worker_nodes"][index]
    response = engine.client.post(
        f"/v1/compute/clusters/{cluster['cluster_id']}/instances/{worker['instance_id']}"
        "/remediations",
        json={"mode": mode, "reason": "test"},
        headers=engine.headers(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "PENDING"
    remediation_id: str = response.json()["id"]
    return remediation_id


def remediation(engine: Engine, cluster_id: str, remediation_id: str) -> dict[str, Any]:
    response = engine.client.get(
        f"/v1/compute/clusters/{cluster_id}/instances/-/remediations/{remediation_id}",
        headers=engine.headers(),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def hosts(engine: Engine) -> dict[str, dict[str, Any]]:
    listed = engine.client.get("/admin/v1/fleet/hosts", headers=engine.headers()).json()
    return {h["name"]: h for h in listed["hosts"]}


def states_seen(engine: Engine, cluster_id: str, remediation_id: str) -> list[str]:
    seen: list[str] = []
    for _ in range(400):
        state = remediation(engine, cluster_id, remediation_id)["state"]
        if not seen or seen[-1] != state:
            seen.append(state)
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        engine.advance(30, step=30)
    return seen


def test_a_reboot_runs_through_quarantine_and_boots_the_same_instance_again(engine: Engine):
    cluster = ready_cluster(engine)
    worker = cluster["gpu_worker_nodes"][0]
    rid = remediate(engine, cluster, "REMEDIATION_MODE_REBOOT_VM")
    seen = states_seen(engine, cluster["cluster_id"], rid)
    assert seen == ["PENDING", "QUARANTINING", "QUARANTINED", "RUNNING", "SUCCEEDED"]
    after = get(engine, cluster["cluster_id"])
    node = next(w for w in after["gpu_worker_nodes"] if w["node_id"] == worker["node_id"])
    assert node["instance_id"] == worker["instance_id"] and node["status"] == "Running"
    phases = [p["phase"] for p in node["phase_transitions"]]
    assert phases[-3:] == ["NODE_PHASE_BOOTING", "NODE_PHASE_BOOTSTRAPPING", "NODE_PHASE_RUNNING"]
    assert phases.count("NODE_PHASE_RUNNING") == 2
    assert node["latest_remediation"]["state"] == "SUCCEEDED"
    finished = remediation(engine, cluster["cluster_id"], rid)
    assert finished["start_time"] and finished["end_time"]
    assert after["node_lifecycle_events"] == [], "a reboot is not a scale event"


def test_recreating_a_vm_puts_a_new_instance_on_the_same_host(engine: Engine):
    cluster = ready_cluster(engine)
    old = cluster["gpu_worker_nodes"][0]
    rid = remediate(engine, cluster, "REMEDIATION_MODE_VM_ONLY")
    assert states_seen(engine, cluster["cluster_id"], rid)[-1] == "SUCCEEDED"
    after = get(engine, cluster["cluster_id"])
    assert len(after["gpu_worker_nodes"]) == 2 and after["num_gpus"] == 16
    new = next(
        w
        for w in after["gpu_worker_nodes"]
        if w["node_id"] != cluster["gpu_worker_nodes"][1]["node_id"]
    )
    assert new["host_name"] == old["host_name"] and new["instance_id"] != old["instance_id"]
    assert [d["instance_id"] for d in after["deleted_gpu_worker_nodes"]] == [old["instance_id"]]
    assert hosts(engine)[old["host_name"]]["cluster_id"] == cluster["cluster_id"]
    assert [e["reason"] for e in after["node_lifecycle_events"]] == ["TogetherNodeAdded"]


def test_a_requested_move_stays_in_the_fabric_and_gives_the_unsuspected_host_back(
    engine: Engine,
):
    cluster = ready_cluster(engine)
    old = cluster["gpu_worker_nodes"][0]
    fabric = hosts(engine)[old["host_name"]]["fabric"]
    rid = remediate(engine, cluster, "REMEDIATION_MODE_HOST_AWARE")
    assert states_seen(engine, cluster["cluster_id"], rid)[-1] == "SUCCEEDED"
    after = get(engine, cluster["cluster_id"])
    names = {w["host_name"] for w in after["gpu_worker_nodes"]}
    assert old["host_name"] not in names and len(names) == 2
    fleet = hosts(engine)
    assert all(fleet[name]["fabric"] == fabric for name in names)
    assert fleet[old["host_name"]]["state"] == "available", "no evidence: not quarantined"
    assert fleet[old["host_name"]]["cluster_id"] is None


def test_evicting_a_node_shrinks_the_cluster_and_gives_the_unsuspected_host_back(
    engine: Engine,
):
    cluster = ready_cluster(engine, num_gpus=24)
    old = cluster["gpu_worker_nodes"][2]
    rid = remediate(engine, cluster, "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT", index=2)
    assert states_seen(engine, cluster["cluster_id"], rid)[-1] == "SUCCEEDED"
    after = get(engine, cluster["cluster_id"])
    assert after["num_gpus"] == 16 and len(after["gpu_worker_nodes"]) == 2
    assert hosts(engine)[old["host_name"]]["state"] == "available"


def test_evicting_a_node_with_an_open_health_signal_quarantines_its_host(engine: Engine):
    cluster = ready_cluster(engine, num_gpus=24)
    old = cluster["gpu_worker_nodes"][2]
    signal = engine.client.post(
        "/admin/v1/health/events",
        json={"host_name": old["host_name"], "kind": "thermal"},
        headers=engine.headers(),
    ).json()
    base = f"/v1/compute/clusters/{cluster['cluster_id']}/instances/-/remediations"
    approved = engine.client.post(
        f"{base}/{signal['remediation_id']}/approve",
        json={"mode": "REMEDIATION_MODE_EVICT_WITHOUT_REPLACEMENT"},
        headers=engine.headers(),
    )
    assert approved.status_code == 200, approved.text
    assert states_seen(engine, cluster["cluster_id"], signal["remediation_id"])[-1] == "SUCCEEDED"
    assert get(engine, cluster["cluster_id"])["num_gpus"] == 16
    assert hosts(engine)[old["host_name"]]["state"] == "quarantined"


def test_a_move_with_no_spare_host_fails_with_the_reason(engine: Engine):
    cluster = ready_cluster(engine, num_gpus=64)  # fills fabric ib-a or ib-b completely
    free = [h for h in hosts(engine).values() if h["region"] == "test-1" and not h["cluster_id"]]
    create(engine, num_gpus=8 * len(free))  # and the other fabric
    rid = remediate(engine, cluster, "REMEDIATION_MODE_HOST_AWARE")
    assert states_seen(engine, cluster["cluster_id"], rid)[-1] == "FAILED"
    failed = remediation(engine, cluster["cluster_id"], rid)
    assert "no spare host" in failed["error_message"]
    after = get(engine, cluster["cluster_id"])
    assert len(after["gpu_worker_nodes"]) == 8, "a failed move leaves the node in service"


def recommend(engine: Engine, cluster: dict[str, Any], mode: str) -> dict[str, Any]:
    worker = cluster["gpu_worker_nodes"][0]
    response = engine.client.post(
        f"/admin/v1/clusters/{cluster['cluster_id']}/instances/{worker['instance_id']}"
        "/recommendations",
        json={"mode": mode, "reason": "XID 79: GPU has fallen off the bus"},
        headers=engine.headers(),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_automated_recommendation_waits_for_approval_then_runs(engine: Engine):
    cluster = ready_cluster(engine)
    proposed = recommend(engine, cluster, "REMEDIATION_MODE_REBOOT_VM")
    assert proposed["state"] == "PENDING_APPROVAL"
    assert proposed["trigger"] == "REMEDIATION_TRIGGER_AUTOMATED"
    engine.advance(600, step=30)
    assert remediation(engine, cluster["cluster_id"], proposed["id"])["state"] == (
        "PENDING_APPROVAL"
    ), "nothing runs before approval"
    base = f"/v1/compute/clusters/{cluster['cluster_id']}/instances/-/remediations"
    approved = engine.client.post(
        f"{base}/{proposed['id']}/approve",
        json={"comment": "go", "mode": "REMEDIATION_MODE_VM_ONLY"},
        headers=engine.headers(),
    ).json()
    assert approved["state"] == "PENDING" and approved["mode"] == "REMEDIATION_MODE_VM_ONLY"
    assert approved["reviewed_by"] == "admin" and approved["review_comment"] == "go"
    assert states_seen(engine, cluster["cluster_id"], proposed["id"])[-1] == "SUCCEEDED"


@pytest.mark.parametrize("action", ["reject", "cancel"])
def test_a_rejected_or_cancelled_recommendation_never_runs(engine: Engine, action: str):
    cluster = ready_cluster(engine)
    proposed = recommend(engine, cluster, "REMEDIATION_MODE_VM_ONLY")
    base = f"/v1/compute/clusters/{cluster['cluster_id']}/instances/-/remediations"
    done = engine.client.post(f"{base}/{proposed['id']}/{action}", headers=engine.headers())
    assert done.status_code == 200 and done.json()["state"] == "CANCELLED"
    engine.advance(1800, step=30)
    after = get(engine, cluster["cluster_id"])
    assert after["deleted_gpu_worker_nodes"] == []
    assert remediation(engine, cluster["cluster_id"], proposed["id"])["state"] == "CANCELLED"


def test_deleting_the_cluster_cancels_its_pending_repairs(engine: Engine):
    cluster = ready_cluster(engine)
    proposed = recommend(engine, cluster, "REMEDIATION_MODE_VM_ONLY")
    base = f"/v1/compute/clusters/{cluster['cluster_id']}/instances/-/remediations"
    engine.client.post(f"{base}/{proposed['id']}/approve", headers=engine.headers())
    engine.client.delete(f"/v1/compute/clusters/{cluster['cluster_id']}", headers=engine.headers())
    engine.advance(60, step=10)
    assert remediation(engine, cluster["cluster_id"], proposed["id"])["state"] == "CANCELLED"


def test_a_requested_repair_waits_out_the_grace_period_and_can_be_cancelled_in_it(
    engine: Engine,
):
    cluster = ready_cluster(engine)
    rid = remediate(engine, cluster, "REMEDIATION_MODE_VM_ONLY")
    engine.advance(25 * 60, step=60)
    assert remediation(engine, cluster["cluster_id"], rid)["state"] == "PENDING"
    base = f"/v1/compute/clusters/{cluster['cluster_id']}/instances/-/remediations"
    cancelled = engine.client.post(f"{base}/{rid}/cancel", headers=engine.headers())
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "CANCELLED"
    engine.advance(3600, step=60)
    assert get(engine, cluster["cluster_id"])["deleted_gpu_worker_nodes"] == []


def test_a_repair_starts_when_the_grace_period_ends(engine: Engine):
    cluster = ready_cluster(engine)
    rid = remediate(engine, cluster, "REMEDIATION_MODE_REBOOT_VM")
    engine.advance(29 * 60, step=60)
    assert remediation(engine, cluster["cluster_id"], rid)["state"] == "PENDING"
    engine.advance(2 * 60, step=60)
    assert remediation(engine, cluster["cluster_id"], rid)["state"] != "PENDING"


def test_a_proposal_for_a_node_that_a_scale_down_removed_is_cancelled(engine: Engine):
    cluster = ready_cluster(engine, num_gpus=24)
    victim = max(cluster["gpu_worker_nodes"], key=lambda w: w["node_id"])  # the newest goes
    signal = engine.client.post(
        "/admin/v1/health/events",
        json={"host_name": victim["host_name"], "kind": "thermal"},
        headers=engine.headers(),
    ).json()
    proposal = signal["remediation_id"]
    assert remediation(engine, cluster["cluster_id"], proposal)["state"] == "PENDING_APPROVAL"
    scaled = engine.client.put(
        f"/v1/compute/clusters/{cluster['cluster_id']}",
        json={"num_gpus": 16},
        headers=engine.headers(),
    )
    assert scaled.status_code == 200, scaled.text
    engine.advance(1800, step=30)
    after = get(engine, cluster["cluster_id"])
    assert victim["instance_id"] in {d["instance_id"] for d in after["deleted_gpu_worker_nodes"]}
    closed = remediation(engine, cluster["cluster_id"], proposal)
    assert closed["state"] == "CANCELLED", "nothing is left open for a node that is gone"
    assert closed["end_time"]


def test_deleting_a_cluster_closes_the_proposals_waiting_for_review(engine: Engine):
    cluster = ready_cluster(engine, num_gpus=24)
    proposed = recommend(engine, cluster, "REMEDIATION_MODE_REBOOT_VM")
    engine.client.delete(f"/v1/compute/clusters/{cluster['cluster_id']}", headers=engine.headers())
    engine.advance(1800, step=30)
    with transaction(engine.app.sessions) as session:
        row = session.get(RemediationRow, proposed["id"])
        assert row is not None and row.state == "CANCELLED" and row.end_time is not None

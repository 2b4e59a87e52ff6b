"""From a health signal to a repaired node: detection, approval, repair, status, evidence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.test_lifecycle import create, get, when
from tests.integration.test_remediation_execution import hosts, remediation
from tests.support.engine import Engine

BASE = "/v1/compute/clusters"


def ready_cluster(engine: Engine, num_gpus: int = 24) -> dict[str, Any]:
    cluster_id = create(engine, num_gpus=num_gpus)["cluster_id"]
    engine.advance(3 * 3600, step=60)
    cluster = get(engine, cluster_id)
    assert cluster["status"] == "Ready"
    return cluster


def inject(engine: Engine, host_name: str, **fault: Any) -> dict[str, Any]:
    response = engine.client.post(
        f"/admin/v1/fleet/hosts/{host_name}/faults", json=fault, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ingest(engine: Engine, **event: Any) -> dict[str, Any]:
    response = engine.client.post("/admin/v1/health/events", json=event, headers=engine.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def events(engine: Engine, **params: str) -> list[dict[str, Any]]:
    response = engine.client.get("/admin/v1/health/events", params=params, headers=engine.headers())
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def remediations_of(engine: Engine, cluster_id: str) -> list[dict[str, Any]]:
    response = engine.client.get(
        f"{BASE}/{cluster_id}/instances/-/remediations", headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["remediations"]
    return found


def act(engine: Engine, cluster_id: str, rid: str, action: str, **body: Any) -> Any:
    return engine.client.post(
        f"{BASE}/{cluster_id}/instances/-/remediations/{rid}/{action}",
        json=body,
        headers=engine.headers(),
    )


def cluster_health(engine: Engine, cluster_id: str) -> dict[str, Any]:
    response = engine.client.get(
        f"/admin/v1/clusters/{cluster_id}/health", headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def run_to_end(engine: Engine, cluster_id: str, rid: str, limit: int = 400) -> str:
    for _ in range(limit):
        state: str = remediation(engine, cluster_id, rid)["state"]
        if state in ("SUCCEEDED", "FAILED", "CANCELLED", "AUTO_RESOLVED"):
            return state
        engine.advance(30, step=30)
    raise AssertionError(f"remediation {rid} did not end")


def test_an_xid_79_leads_to_an_approved_move_to_a_spare_in_the_same_fabric(engine: Engine):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    victim = cluster["gpu_worker_nodes"][0]
    fabric = hosts(engine)[victim["host_name"]]["fabric"]
    started = engine.clock.now()
    inject(engine, victim["host_name"], kind="xid", xid_code=79)
    engine.advance(2, step=1)

    [proposal] = remediations_of(engine, cid)
    assert proposal["state"] == "PENDING_APPROVAL"
    assert proposal["trigger"] == "REMEDIATION_TRIGGER_AUTOMATED"
    assert proposal["mode"] == "REMEDIATION_MODE_HOST_AWARE"
    assert proposal["instance_id"] == victim["instance_id"]
    [event] = events(engine, cluster_id=cid)
    assert event["xid_code"] == 79 and event["alert_name"] == "DmesgGpuFallenOffBus"
    assert event["remediation_id"] == proposal["id"]
    assert proposal["passive_health_check_event_id"] == event["id"]
    assert [a["passive_health_check_alert_id"] for a in proposal["linked_alerts"]] == [event["id"]]
    assert proposal["linked_alerts"][0]["annotation"]["xid"]["events"][0]["xid_code"] == "79"
    from clusterplane.clock import utc

    assert (when(proposal["create_time"]) - utc(started)).total_seconds() <= 2
    degraded = get(engine, cid)
    assert degraded["status"] == "Degraded"
    node = next(n for n in degraded["gpu_worker_nodes"] if n["node_id"] == victim["node_id"])
    assert node["status"] == "Cordoned"
    assert node["latest_remediation"]["id"] == proposal["id"]

    approved = act(engine, cid, proposal["id"], "approve", comment="go")
    assert approved.status_code == 200 and approved.json()["state"] == "PENDING"
    assert run_to_end(engine, cid, proposal["id"]) == "SUCCEEDED"
    engine.advance(60, step=30)

    after = get(engine, cid)
    assert after["status"] == "Ready"
    statuses = [p["phase"] for p in after["phase_transitions"]]
    assert statuses[-2:] == ["CLUSTER_PHASE_DEGRADED", "CLUSTER_PHASE_READY"]
    names = {w["host_name"] for w in after["gpu_worker_nodes"]}
    assert victim["host_name"] not in names and len(after["gpu_worker_nodes"]) == 3
    fleet = hosts(engine)
    assert all(fleet[name]["fabric"] == fabric for name in names)
    assert fleet[victim["host_name"]]["state"] == "quarantined"
    finished = remediation(engine, cid, proposal["id"])
    new_node = next(
        w
        for w in after["gpu_worker_nodes"]
        if w["host_name"] not in {n["host_name"] for n in cluster["gpu_worker_nodes"]}
    )
    assert new_node["status"] == "Running"
    assert finished["linked_alerts"][0]["passive_health_check_alert_id"] == event["id"]
    assert [e["reason"] for e in after["node_lifecycle_events"]] == ["TogetherNodeAdded"]


def test_a_signal_that_clears_before_approval_auto_resolves_and_uncordons(engine: Engine):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    victim = cluster["gpu_worker_nodes"][1]
    event = ingest(engine, host_name=victim["host_name"], kind="thermal")
    assert event["remediation_id"]
    engine.advance(1, step=1)
    assert get(engine, cid)["status"] == "Degraded"
    response = engine.client.post(
        f"/admin/v1/health/events/{event['id']}/resolve", headers=engine.headers()
    )
    assert response.status_code == 200
    engine.advance(10)
    assert remediation(engine, cid, event["remediation_id"])["state"] == "AUTO_RESOLVED"
    after = get(engine, cid)
    assert after["status"] == "Ready"
    node = next(n for n in after["gpu_worker_nodes"] if n["node_id"] == victim["node_id"])
    assert node["status"] == "Running"


def test_a_harmless_xid_is_recorded_but_excludes_nothing(engine: Engine):
    cluster = ready_cluster(engine)
    event = ingest(
        engine, host_name=cluster["gpu_worker_nodes"][0]["host_name"], kind="xid", xid_code=13
    )
    assert event["action"] == "none" and event["remediation_id"] is None
    assert get(engine, cluster["cluster_id"])["status"] == "Ready"
    assert remediations_of(engine, cluster["cluster_id"]) == []


def test_a_stronger_signal_escalates_a_pending_proposal_in_place(engine: Engine):
    cluster = ready_cluster(engine)
    host = cluster["gpu_worker_nodes"][0]["host_name"]
    first = ingest(engine, host_name=host, kind="xid", xid_code=94)
    row = remediation(engine, cluster["cluster_id"], first["remediation_id"])
    assert row["mode"] == "REMEDIATION_MODE_REBOOT_VM"
    second = ingest(engine, host_name=host, kind="fallen_off_bus")
    assert second["remediation_id"] == first["remediation_id"]
    row = remediation(engine, cluster["cluster_id"], first["remediation_id"])
    assert row["mode"] == "REMEDIATION_MODE_HOST_AWARE"
    assert len(row["linked_alerts"]) == 2


def test_a_repair_that_did_not_help_is_followed_by_a_stronger_one_after_the_cooldown(
    engine: Engine,
):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    victim = cluster["gpu_worker_nodes"][0]
    # A fault only a hardware repair fixes, reported as one a GPU reset should fix.
    inject(engine, victim["host_name"], kind="xid", xid_code=94, fixed_by="replace")
    engine.advance(1, step=1)
    [first] = remediations_of(engine, cid)
    assert first["mode"] == "REMEDIATION_MODE_REBOOT_VM"
    act(engine, cid, first["id"], "approve")
    assert run_to_end(engine, cid, first["id"]) == "FAILED"
    failed = remediation(engine, cid, first["id"])
    assert "verification" in failed["error_message"]
    engine.advance(10 * 60, step=60)
    assert len(remediations_of(engine, cid)) == 1, "cooldown: no new proposal yet"
    held = events(engine, cluster_id=cid, open="true")
    # The XID itself, and the failed verification check as a signal of its own.
    assert sorted(e["kind"] for e in held) == ["active_check", "xid"]
    assert all("cooldown" in e["held_reason"] for e in held)
    engine.advance(25 * 60, step=60)
    newest = remediations_of(engine, cid)[0]
    assert newest["id"] != first["id"] and newest["state"] == "PENDING_APPROVAL"
    # Stronger than the reboot that did not help: the check says the GPU itself is bad.
    assert newest["mode"] == "REMEDIATION_MODE_HOST_AWARE"
    assert {a["passive_health_check_alert_id"] for a in newest["linked_alerts"]} == {
        e["id"] for e in held
    }
    check = next(e for e in held if e["kind"] == "active_check")
    run = engine.client.get(
        f"/admin/v1/health/checks/{check['check_run_id']}", headers=engine.headers()
    ).json()
    assert run["purpose"] == "verification" and run["state"] == "FAILED"


def test_a_signal_that_returns_after_a_repair_gets_the_next_stronger_mode(engine: Engine):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    host = cluster["gpu_worker_nodes"][0]["host_name"]
    first = ingest(engine, host_name=host, kind="ecc")
    act(engine, cid, first["remediation_id"], "approve")
    assert run_to_end(engine, cid, first["remediation_id"]) == "SUCCEEDED"
    assert remediation(engine, cid, first["remediation_id"])["mode"] == (
        "REMEDIATION_MODE_HOST_POWER_CYCLE"
    )
    engine.advance(31 * 60, step=60)
    again = ingest(engine, host_name=host, kind="ecc")
    row = remediation(engine, cid, again["remediation_id"])
    assert row["mode"] == "REMEDIATION_MODE_VM_ONLY" and "escalated" in row["reason"]


def test_repair_stops_when_more_than_40_percent_of_a_cluster_is_unhealthy(engine: Engine):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    workers = cluster["gpu_worker_nodes"]
    first = ingest(engine, host_name=workers[0]["host_name"], kind="ecc")
    assert first["remediation_id"]
    second = ingest(engine, host_name=workers[1]["host_name"], kind="ecc")
    assert second["remediation_id"] is None
    assert "automatic repair stopped: 2 of 3" in second["held_reason"]
    report = cluster_health(engine, cid)
    assert report["remediation_stopped"] is True
    assert "2 of 3" in report["remediation_stopped_reason"]
    assert report["unhealthy_workers"] == 2
    # The signal on the first node clears: the cluster is back under the rule.
    engine.client.post(f"/admin/v1/health/events/{first['id']}/resolve", headers=engine.headers())
    engine.advance(120, step=30)
    resumed = events(engine, cluster_id=cid, open="true")
    assert [e["id"] for e in resumed] == [second["id"]]
    assert resumed[0]["remediation_id"] is not None
    assert cluster_health(engine, cid)["remediation_stopped"] is False


def test_an_auto_approve_policy_approves_proposals_as_auto_approved(engine: Engine):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    response = engine.client.put(
        f"/admin/v1/clusters/{cid}/remediation-policy",
        json={"auto_approve": True},
        headers=engine.headers(),
    )
    assert response.status_code == 200
    event = ingest(engine, host_name=cluster["gpu_worker_nodes"][0]["host_name"], kind="ecc")
    row = remediation(engine, cid, event["remediation_id"])
    assert row["state"] == "PENDING" and row["reviewed_by"] == "Auto-Approved"


def test_a_node_opted_out_of_auto_remediation_gets_no_proposal(engine: Engine):
    cluster = ready_cluster(engine)
    from sqlalchemy import update

    from clusterplane.db.engine import transaction
    from clusterplane.db.rows import NodeRow

    victim = cluster["gpu_worker_nodes"][0]
    with transaction(engine.app.sessions) as session:
        session.execute(
            update(NodeRow)
            .where(NodeRow.instance_id == victim["instance_id"])
            .values(auto_remediation_enabled=False)
        )
    event = ingest(engine, host_name=victim["host_name"], kind="ecc")
    assert event["remediation_id"] is None and "disabled" in event["held_reason"]


def test_an_on_demand_check_on_a_faulty_host_fails_with_evidence_and_proposes_a_repair(
    engine: Engine,
):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    victim = cluster["gpu_worker_nodes"][2]
    # A silent fault: nothing reports it, only an active check finds it.
    from sqlalchemy import select

    from clusterplane.db.engine import transaction
    from clusterplane.db.rows import HostRow
    from clusterplane.domain.health import Action, EventKind
    from clusterplane.simulation import faults
    from clusterplane.simulation.fault_model import FaultSpec

    with transaction(engine.app.sessions) as session:
        host = session.scalars(select(HostRow).where(HostRow.name == victim["host_name"])).one()
        fault = faults.inject_fault(
            session, host, FaultSpec(EventKind.NVLINK, None, Action.REBOOT), engine.clock.now()
        )
        fault.event_id = "silent"
    response = engine.client.post(
        "/admin/v1/health/checks",
        json={"host_name": victim["host_name"], "check": "nccl_single_node"},
        headers=engine.headers(),
    )
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["state"] == "RUNNING"
    engine.advance(600, step=30)
    done = engine.client.get(f"/admin/v1/health/checks/{run['id']}", headers=engine.headers())
    body = done.json()
    assert body["state"] == "FAILED"
    assert body["result"]["bus_bandwidth_gbps"] < 300
    [proposal] = remediations_of(engine, cid)
    assert proposal["active_health_check_run_id"] == run["id"]
    healthy = cluster["gpu_worker_nodes"][0]["host_name"]
    ok = engine.client.post(
        "/admin/v1/health/checks",
        json={"host_name": healthy, "check": "dcgm_diag", "level": 3},
        headers=engine.headers(),
    ).json()
    engine.advance(3000, step=60)
    passed = engine.client.get(f"/admin/v1/health/checks/{ok['id']}", headers=engine.headers())
    assert passed.json()["state"] == "PASSED"
    assert passed.json()["started_at"] != passed.json()["finished_at"]


def silent_fault(engine: Engine, host_name: str, kind: str = "nvlink") -> None:
    """A fault no passive signal reports: only an active check can find it."""
    from sqlalchemy import select

    from clusterplane.db.engine import transaction
    from clusterplane.db.rows import HostRow
    from clusterplane.domain.health import Action, EventKind
    from clusterplane.simulation import faults
    from clusterplane.simulation.fault_model import FaultSpec

    with transaction(engine.app.sessions) as session:
        host = session.scalars(select(HostRow).where(HostRow.name == host_name)).one()
        fault = faults.inject_fault(
            session, host, FaultSpec(EventKind(kind), None, Action.REPLACE), engine.clock.now()
        )
        fault.event_id = "silent"
        fault.next_reconcile_at = None


def test_a_worker_failing_acceptance_tests_is_replaced_by_a_spare_before_ready(engine: Engine):
    created = create(engine, num_gpus=24)
    cid = created["cluster_id"]
    bad = created["gpu_worker_nodes"][1]
    fabric = hosts(engine)[bad["host_name"]]["fabric"]
    silent_fault(engine, bad["host_name"], kind="ecc")
    engine.advance(3 * 3600, step=60)

    cluster = get(engine, cid)
    assert cluster["status"] == "Ready"
    seen = [p["phase"].removeprefix("CLUSTER_PHASE_") for p in cluster["phase_transitions"]]
    assert seen[-5:] == [
        "RUNNING_ACCEPTANCE_TESTS",
        "ACCEPTANCE_TESTS_FAILED",
        "RUNNING_ACCEPTANCE_TESTS",
        "RUNNING_NCCL_TESTS",
        "READY",
    ]
    assert "DEGRADED" not in seen
    names = {w["host_name"] for w in cluster["gpu_worker_nodes"]}
    assert bad["host_name"] not in names and len(names) == 3
    assert all(hosts(engine)[n]["fabric"] == fabric for n in names)
    assert [d["instance_id"] for d in cluster["deleted_gpu_worker_nodes"]] == [bad["instance_id"]]
    assert hosts(engine)[bad["host_name"]]["state"] == "quarantined"
    runs = engine.client.get(
        "/admin/v1/health/checks", params={"cluster_id": cid}, headers=engine.headers()
    ).json()["checks"]
    [failed] = [r for r in runs if r["state"] == "FAILED"]
    assert failed["purpose"] == "acceptance" and failed["host_name"] == bad["host_name"]
    assert failed["check"] == "dcgm_diag" and failed["result"]["failing_gpus"]
    assert remediations_of(engine, cid) == [], "a replaced node needs no repair"


def test_a_quarantined_host_returns_to_the_fleet_only_after_repair_and_a_passing_check(
    engine: Engine,
):
    cluster = ready_cluster(engine)
    victim = cluster["gpu_worker_nodes"][0]
    engine.client.put(
        f"/admin/v1/clusters/{cluster['cluster_id']}/remediation-policy",
        json={"auto_approve": True},
        headers=engine.headers(),
    )
    inject(engine, victim["host_name"], kind="xid", xid_code=79)
    engine.advance(3 * 3600, step=60)
    assert hosts(engine)[victim["host_name"]]["state"] == "quarantined"
    engine.advance(2 * 86400 - 4 * 3600, step=600)
    assert hosts(engine)[victim["host_name"]]["state"] == "quarantined", "still in repair"
    engine.advance(4 * 3600, step=300)
    assert hosts(engine)[victim["host_name"]]["state"] == "available"
    runs = engine.client.get(
        "/admin/v1/health/checks",
        params={"host_name": victim["host_name"]},
        headers=engine.headers(),
    ).json()["checks"]
    back = next(r for r in runs if r["purpose"] == "return_to_service")
    assert back["state"] == "PASSED" and back["level"] == 3
    assert events(engine, host_name=victim["host_name"], open="true") == []


def test_an_unhealthy_signal_from_an_idle_host_takes_it_out_of_the_fleet(engine: Engine):
    idle = next(h for h, v in hosts(engine).items() if v["state"] == "available")
    event = ingest(engine, host_name=idle, kind="fallen_off_bus")
    assert event["instance_id"] is None and event["remediation_id"] is None
    assert hosts(engine)[idle]["state"] == "quarantined"


def test_the_fleet_wide_cap_holds_further_repairs_until_one_finishes(tmp_path: Path):
    from clusterplane.settings import HealthSettings
    from tests.support.engine import make_engine

    capped = HealthSettings(max_fleet_remediation_share=0.01)  # 20 hosts: one at a time
    for engine in make_engine(tmp_path, health=capped):
        cluster = ready_cluster(engine)
        cid = cluster["cluster_id"]
        ids = []
        for worker in cluster["gpu_worker_nodes"][:2]:
            response = engine.client.post(
                f"{BASE}/{cid}/instances/{worker['instance_id']}/remediations",
                json={"mode": "REMEDIATION_MODE_REBOOT_VM"},
                headers=engine.headers(),
            )
            ids.append(response.json()["id"])
        engine.advance(31 * 60, step=30)
        states = {rid: remediation(engine, cid, rid)["state"] for rid in ids}
        waiting = [rid for rid, state in states.items() if state == "PENDING"]
        assert len(waiting) == 1, f"exactly one repair may run under a cap of one: {states}"
        [running] = [rid for rid in ids if rid not in waiting]
        assert run_to_end(engine, cid, running) == "SUCCEEDED"
        waiting_id = waiting[0]
        assert run_to_end(engine, cid, waiting_id) == "SUCCEEDED"
        first_end = when(remediation(engine, cid, running)["end_time"])
        second_start = when(remediation(engine, cid, waiting_id)["start_time"])
        assert second_start >= first_end, "never two repairs at once under a cap of one"


def test_a_reboot_returns_the_node_to_service_only_after_a_passing_verification_check(
    engine: Engine,
):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    worker = cluster["gpu_worker_nodes"][0]
    response = engine.client.post(
        f"{BASE}/{cid}/instances/{worker['instance_id']}/remediations",
        json={"mode": "REMEDIATION_MODE_REBOOT_VM"},
        headers=engine.headers(),
    )
    rid = response.json()["id"]
    assert run_to_end(engine, cid, rid) == "SUCCEEDED"
    runs = engine.client.get(
        "/admin/v1/health/checks", params={"cluster_id": cid}, headers=engine.headers()
    ).json()["checks"]
    [check] = [r for r in runs if r["remediation_id"] == rid]
    assert check["purpose"] == "verification" and check["state"] == "PASSED"
    assert when(check["finished_at"]) <= when(remediation(engine, cid, rid)["end_time"])
    node = next(
        n for n in get(engine, cid)["gpu_worker_nodes"] if n["node_id"] == worker["node_id"]
    )
    assert node["status"] == "Running"


def test_a_node_someone_else_cordoned_stays_cordoned_when_its_signal_clears(engine: Engine):
    from sqlalchemy import update

    from clusterplane.db.engine import transaction
    from clusterplane.db.rows import NodeRow

    cluster = ready_cluster(engine)
    victim = cluster["gpu_worker_nodes"][0]
    with transaction(engine.app.sessions) as session:
        session.execute(
            update(NodeRow)
            .where(NodeRow.instance_id == victim["instance_id"])
            .values(cordoned_by="operator", status="Cordoned")
        )
    event = ingest(engine, host_name=victim["host_name"], kind="thermal")
    engine.client.post(f"/admin/v1/health/events/{event['id']}/resolve", headers=engine.headers())
    engine.advance(10)
    report = cluster_health(engine, cluster["cluster_id"])
    node = next(n for n in report["nodes"] if n["instance_id"] == victim["instance_id"])
    assert node["health"] == "healthy" and node["cordoned_by"] == "operator"
    assert node["status"] == "Cordoned"


def test_scheduled_checks_run_on_idle_hosts_only_and_take_a_faulty_one_out(tmp_path: Path):
    from clusterplane.settings import HealthSettings
    from tests.support.engine import make_engine

    hourly = HealthSettings(idle_check_interval_seconds=3600)
    for engine in make_engine(tmp_path, health=hourly):
        cluster = ready_cluster(engine)
        serving = {w["host_name"] for w in cluster["gpu_worker_nodes"]}
        idle = sorted(h for h, v in hosts(engine).items() if v["state"] == "available")
        silent_fault(engine, idle[0], kind="fallen_off_bus")
        engine.advance(2 * 3600, step=120)
        assert hosts(engine)[idle[0]]["state"] == "quarantined"
        runs = engine.client.get("/admin/v1/health/checks", headers=engine.headers()).json()[
            "checks"
        ]
        scheduled = [r for r in runs if r["purpose"] == "scheduled"]
        on_serving = [r for r in scheduled if r["host_name"] in serving and r["finished_at"]]
        assert on_serving and all("not idle" in r["message"] for r in on_serving)
        assert all(r["started_at"] is None for r in on_serving), "serving hosts are not tested"
        failed = [r for r in scheduled if r["host_name"] == idle[0] and r["state"] == "FAILED"]
        assert failed and failed[0]["result"]["failing_gpus"]
        passed = [r for r in scheduled if r["host_name"] == idle[1] and r["state"] == "PASSED"]
        assert passed and passed[0]["started_at"] is not None
        assert get(engine, cluster["cluster_id"])["status"] == "Ready"


def test_an_auto_approved_repair_waits_while_its_cluster_is_over_the_stop_rule(engine: Engine):
    cluster = ready_cluster(engine)
    cid = cluster["cluster_id"]
    engine.client.put(
        f"/admin/v1/clusters/{cid}/remediation-policy",
        json={"auto_approve": True},
        headers=engine.headers(),
    )
    workers = cluster["gpu_worker_nodes"]
    first = ingest(engine, host_name=workers[0]["host_name"], kind="ecc")
    assert remediation(engine, cid, first["remediation_id"])["state"] == "PENDING"
    second = ingest(engine, host_name=workers[1]["host_name"], kind="ecc")
    assert second["remediation_id"] is None
    engine.advance(40 * 60, step=60)
    assert remediation(engine, cid, first["remediation_id"])["state"] == "PENDING"
    assert cluster_health(engine, cid)["remediation_stopped"] is True
    engine.client.post(f"/admin/v1/health/events/{second['id']}/resolve", headers=engine.headers())
    assert cluster_health(engine, cid)["remediation_stopped"] is False
    assert run_to_end(engine, cid, first["remediation_id"]) == "SUCCEEDED"
    engine.advance(60, step=30)
    assert get(engine, cid)["status"] == "Ready"


def test_a_worker_failing_acceptance_in_the_pass_that_starts_the_tests_is_replaced(
    instant: Engine,
):
    # Instantaneous steps: the pass whose workers come up also installs the drivers and
    # runs the acceptance tests, and judges them.
    created = create(instant, num_gpus=24)
    bad = created["gpu_worker_nodes"][1]
    silent_fault(instant, bad["host_name"], kind="ecc")
    instant.app.manager.run_once()
    instant.app.manager.run_once()
    cluster = get(instant, created["cluster_id"])
    seen = [p["phase"].removeprefix("CLUSTER_PHASE_") for p in cluster["phase_transitions"]]
    assert seen[-3:] == [
        "INSTALLING_DRIVERS",
        "RUNNING_ACCEPTANCE_TESTS",
        "ACCEPTANCE_TESTS_FAILED",
    ]
    worker = next(w for w in cluster["gpu_worker_nodes"] if w["node_id"] == bad["node_id"])
    assert worker["status"] == "Draining"
    instant.app.manager.run_until_idle()
    cluster = get(instant, created["cluster_id"])
    assert cluster["status"] == "Ready"
    assert bad["host_name"] not in {w["host_name"] for w in cluster["gpu_worker_nodes"]}

"""The port a host driver for agent hosts uses: publish desired state, observe the agent.

In-process (`engine` fixture): enrollment and the agent's signed calls go through the
test client; publishing and observing call `services.agents.host_assignments` directly, as the
lifecycle's host driver will.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from clusterplane.agent.identity import public_key_text
from clusterplane.agent.signing import sign_headers
from clusterplane.db.engine import transaction
from clusterplane.db.rows import HostRow
from clusterplane.domain.agent_protocol import Inventory, NodeSpec, UserSpec
from clusterplane.domain.enums import NodePhase
from clusterplane.providers.agent_port import DesiredNode, HostAssignments
from clusterplane.services.agents import host_assignments
from clusterplane.services.capacity import fleet
from tests.support.engine import SMALL_FLEET, Engine

DESIRED = DesiredNode(
    cluster_id="c-1",
    node=NodeSpec(node_name="w1", instance_id="i-1", role="gpu_worker", hostname="c1-w1"),
    users=(UserSpec(name="alice", uid=2001),),
    secrets={"munge.key": "very-secret-munge-key"},
    runtimes={"slurm": {"role": "worker"}},
)


def _enroll(engine: Engine, name: str) -> tuple[Ed25519PrivateKey, str]:
    token = engine.client.post(
        "/admin/v1/join-tokens", json={"region": "test-1"}, headers=engine.headers()
    ).json()["token"]
    key = Ed25519PrivateKey.generate()
    inventory = Inventory(hostname=name, num_cpu_cores=8, memory_gib=64)
    answer = engine.client.post(
        "/agent/v1/enroll",
        json={
            "join_token": token,
            "public_key": public_key_text(key),
            "inventory": inventory.model_dump(mode="json"),
        },
    )
    assert answer.status_code == 201, answer.text
    host_id: str = answer.json()["host_id"]
    return key, host_id


def _signed(
    engine: Engine,
    key: Ed25519PrivateKey,
    host_id: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> Any:
    content = orjson.dumps(body) if body is not None else b""
    headers = sign_headers(key, host_id=host_id, method=method, path=path, body=content)
    return engine.client.request(method, path, content=content, headers=headers)


def test_publishing_moves_the_generation_only_on_change_and_seals_secrets(engine: Engine):
    _, host_id = _enroll(engine, "cpu-1")
    box = engine.app.api.state.cp.secrets
    with transaction(engine.app.sessions) as session:
        first = host_assignments.publish(session, box, host_id, DESIRED, now=engine.clock.now())
        same = host_assignments.publish(session, box, host_id, DESIRED, now=engine.clock.now())
        assert (first, same) == (1, 1)
        served = host_assignments.current(session, box, host_id)
        assert served.generation == 1 and served.secrets == DESIRED.secrets
    with engine.app.engine.connect() as conn:
        stored = conn.execute(text("SELECT spec, sealed_secrets FROM host_assignments")).one()
    assert "very-secret-munge-key" not in str(stored)
    with transaction(engine.app.sessions) as session:
        released = host_assignments.release(session, box, host_id, now=engine.clock.now())
        assert released == 2
        served = host_assignments.current(session, box, host_id)
        assert served.cluster_id is None and served.secrets == {} and served.users == []


def test_an_agents_report_is_what_the_driver_observes_through_its_port(engine: Engine):
    key, host_id = _enroll(engine, "cpu-2")
    port: HostAssignments = engine.app.agent_hosts
    generation = port.publish(host_id, DESIRED)
    observed = port.observe(host_id)
    assert observed is not None and not observed.converged
    assert observed.generation_published == generation
    path = f"/agent/v1/hosts/{host_id}/assignment?after_generation=0"
    pulled = _signed(engine, key, host_id, "GET", path)
    assert pulled.status_code == 200 and pulled.json()["generation"] == generation
    report = {
        "generation_applied": generation,
        "cluster_id": "c-1",
        "phase": "failed",
        "node_phase": NodePhase.FAILED,
        "sections": {"users": {"ok": True}, "runtime:slurm": {"ok": False, "message": "no"}},
    }
    sent = _signed(engine, key, host_id, "POST", f"/agent/v1/hosts/{host_id}/status", report)
    assert sent.status_code == 200, sent.text
    observed = port.observe(host_id)
    assert observed is not None and not observed.converged
    assert (observed.node_phase, observed.failures) == (NodePhase.FAILED, {"runtime:slurm": "no"})
    report.update(phase="ready", node_phase=NodePhase.RUNNING, sections={"users": {"ok": True}})
    _signed(engine, key, host_id, "POST", f"/agent/v1/hosts/{host_id}/status", report)
    observed = port.observe(host_id)
    assert observed is not None and observed.converged
    assert (observed.status, observed.cluster_id, observed.node_phase) == (
        "ready",
        "c-1",
        NodePhase.RUNNING,
    )
    assert port.observe("host_without_agent") is None
    assert port.release(host_id) == generation + 1


def test_bad_reports_and_health_batches_are_refused_and_write_nothing(engine: Engine):
    key, host_id = _enroll(engine, "cpu-3")
    before = engine.table_counts()
    status = f"/agent/v1/hosts/{host_id}/status"
    for body in ({"phase": "ready"}, {"generation_applied": 1, "phase": "dancing"}):
        refused = _signed(engine, key, host_id, "POST", status, body)
        assert refused.status_code == 400 and refused.json()["error"]["param"], refused.text
    events = f"/agent/v1/hosts/{host_id}/health-events"
    first = {"key": "a", "kind": "xid", "xid_code": 48}
    for bad, param in (
        ({"key": "b", "kind": "heartbeat_loss"}, "kind"),
        ({"key": "c", "kind": "xid"}, "xid_code"),
        ({"key": "d", "kind": "ecc", "message": "nul\x00"}, None),
    ):
        refused = _signed(engine, key, host_id, "POST", events, {"events": [first, bad]})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == param, refused.text
    after = engine.table_counts()
    # Only signed calls' nonces were kept (each refused call was still a proven agent's).
    assert {k: v for k, v in after.items() if k != "agent_nonces"} == {
        k: v for k, v in before.items() if k != "agent_nonces"
    }


def test_a_fleet_file_sync_leaves_enrolled_hosts_in_service(engine: Engine):
    _, host_id = _enroll(engine, "cpu-4")
    with transaction(engine.app.sessions) as session:
        report = fleet.sync_fleet(session, fleet.load_fleet_file(SMALL_FLEET), engine.clock.now())
        assert report.retired == 0
        host = session.get(HostRow, host_id)
        assert host is not None and (host.state, host.in_fleet_file) == ("available", True)


def test_enrollment_text_with_nul_or_a_bad_host_name_is_refused_and_creates_nothing(
    engine: Engine,
):
    token = engine.client.post(
        "/admin/v1/join-tokens", json={"region": "test-1"}, headers=engine.headers()
    ).json()["token"]
    before = engine.table_counts()
    key = public_key_text(Ed25519PrivateKey.generate())
    good = Inventory(hostname="cpu-5", num_cpu_cores=1, memory_gib=1).model_dump(mode="json")
    for inventory in (
        {**good, "hostname": "../etc"},
        {**good, "ib_hca_type": "mlx\x00"},
        {**good, "labels": {"rack": "r 1"}},
    ):
        answer = engine.client.post(
            "/agent/v1/enroll",
            json={"join_token": token, "public_key": key, "inventory": inventory},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["type"] == "invalid_request_error"
    assert engine.table_counts() == before


def test_a_poll_over_the_limit_is_answered_at_once_and_told_when_to_come_back(engine: Engine):
    key, host_id = _enroll(engine, "cpu-6")
    engine.app.api.state.cp.long_polls.limit = 0
    path = f"/agent/v1/hosts/{host_id}/assignment?after_generation=0"
    started = time.monotonic()
    answer = _signed(engine, key, host_id, "GET", path)
    assert answer.status_code == 200 and answer.json()["generation"] == 0
    assert answer.headers["retry-after"] == "5" and time.monotonic() - started < 5


def test_a_signal_the_agent_sends_again_becomes_one_health_event(engine: Engine):
    key, host_id = _enroll(engine, "cpu-7")
    path = f"/agent/v1/hosts/{host_id}/health-events"
    signal = {"key": "kmsg:boot-1:4711", "kind": "xid", "xid_code": 48, "gpu_index": 2}
    first = _signed(engine, key, host_id, "POST", path, {"events": [signal]}).json()
    [made] = first["results"]
    assert made["duplicate"] is False and made["event"]["xid_code"] == 48
    new = {**signal, "key": "kmsg:boot-1:4712"}
    again = _signed(engine, key, host_id, "POST", path, {"events": [signal, new, new]}).json()
    old_copy, made_new, new_copy = again["results"]
    assert (old_copy["duplicate"], old_copy["event_id"]) == (True, made["event_id"])
    assert made_new["duplicate"] is False and made_new["event_id"] != made["event_id"]
    assert (new_copy["duplicate"], new_copy["event_id"]) == (True, made_new["event_id"])
    events = engine.client.get(
        "/admin/v1/health/events", params={"host_name": "cpu-7"}, headers=engine.headers()
    ).json()["events"]
    assert len(events) == 2


def test_a_flavour_patch_merges_into_its_section_and_survives_the_host_drivers_publish(
    engine: Engine,
):
    _, host_id = _enroll(engine, "cpu-patch")
    port: HostAssignments = engine.app.agent_hosts
    node_only = DesiredNode(cluster_id="c-1", node=DESIRED.node)
    first = port.publish(host_id, node_only)
    assert port.patch_runtime(host_id, "c-other", "slurm", {"role": "worker"}) is None
    patched = port.patch_runtime(
        host_id, "c-1", "slurm", {"role": "controller", "drain": {"w1": "clusterplane: x"}},
        secrets={"munge.key": "key-1"},
    )  # fmt: skip
    assert patched == first + 1
    port.patch_runtime(host_id, "c-1", "slurm", {"drain": {"w2": "clusterplane: y"}})
    port.patch_runtime(host_id, "c-1", "slurm", {"drain": {"w1": None}})
    again = port.publish(host_id, node_only)  # the host driver's next pass changes nothing
    box = engine.app.api.state.cp.secrets
    with transaction(engine.app.sessions) as session:
        served = host_assignments.current(session, box, host_id)
    assert again == served.generation == first + 3
    assert served.runtimes == {"slurm": {"role": "controller", "drain": {"w2": "clusterplane: y"}}}
    assert served.secrets == {"munge.key": "key-1"}
    port.publish(host_id, DesiredNode(cluster_id="c-2", node=DESIRED.node))
    with transaction(engine.app.sessions) as session:
        served = host_assignments.current(session, box, host_id)
    assert served.runtimes == {} and served.secrets == {}  # another cluster starts clean
    [peer] = port.peers("c-2")
    assert (peer.host_id, peer.node_name, peer.role) == (host_id, "w1", "gpu_worker")
    assert port.peers("c-1") == []


def test_a_flavour_patch_of_none_removes_its_section_and_keeps_the_hosts_secrets(
    engine: Engine,
):
    _, host_id = _enroll(engine, "cpu-unpatch")
    port: HostAssignments = engine.app.agent_hosts
    port.publish(host_id, DesiredNode(cluster_id="c-1", node=DESIRED.node))
    port.patch_runtime(host_id, "c-1", "slurm", {"role": "worker"}, secrets={"munge.key": "k"})
    port.patch_runtime(host_id, "c-1", "other", {"x": 1})

    removed = port.patch_runtime(host_id, "c-1", "slurm", None)

    assert port.patch_runtime(host_id, "c-1", "slurm", None) == removed  # nothing left to do
    box = engine.app.api.state.cp.secrets
    with transaction(engine.app.sessions) as session:
        served = host_assignments.current(session, box, host_id)
    assert served.generation == removed
    assert served.runtimes == {"other": {"x": 1}} and served.secrets == {"munge.key": "k"}

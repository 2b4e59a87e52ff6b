"""Enrollment and agent credentials against a real server: join tokens, signed requests.

Agents here are `AgentClient`s in the test process (enrollment and signing are what is
under test); `test_agent_hosts.py` runs real agent processes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clusterplane.agent.client import AgentClient, ServerRefused
from clusterplane.agent.signing import sign_headers
from clusterplane.cli.main import main
from clusterplane.domain import agent_protocol as wire
from tests.support.agents import REGION, agent_server, issue_token
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module (each test names its own hosts)."""
    with agent_server(tmp_path_factory.mktemp("agents")) as proc:
        yield proc


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _inventory(name: str, gpus: int = 8) -> wire.Inventory:
    return wire.Inventory(
        hostname=name,
        gpu_type="H100_SXM",
        gpus=[wire.GpuInfo(index=i, model="NVIDIA H100 80GB HBM3") for i in range(gpus)],
        gpu_source="config",
        num_cpu_cores=64,
        memory_gib=512,
        ib_hcas=["mlx5_0", "mlx5_1"],
        ib_hca_type="MT_0000000838",
        labels={"rack": "ignored-when-the-token-names-one"},
    )


def _agent(server: ServerProcess) -> AgentClient:
    return AgentClient(server.base_url, Ed25519PrivateKey.generate())


def _fleet_state(http: httpx.Client) -> tuple[list[str], list[Any]]:
    hosts = [h["name"] for h in http.get("/admin/v1/fleet/hosts").json()["hosts"]]
    return hosts, http.get("/admin/v1/agents").json()["agents"]


def test_a_host_enrolls_with_a_cli_issued_token_and_joins_the_fleet_as_an_agent_host(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
):
    admin = ["admin", "--url", server.base_url, "--api-key", server.api_key]
    assert (
        main([*admin, "join-tokens", "create", "--region", REGION, "--rack", "r7", "--ttl", "30m"])
        == 0
    )
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("cpjt_")
    agent = _agent(server)
    name = _name("gpu")
    answer = agent.enroll(token, _inventory(name))
    assert (answer["host_name"], answer["region"], answer["rack"]) == (name, REGION, "r7")
    assert main([*admin, "--json", "hosts", "list", "--region", REGION]) == 0
    [host] = [h for h in json.loads(capsys.readouterr().out)["hosts"] if h["name"] == name]
    assert (host["name"], host["driver"], host["num_gpus"], host["state"]) == (
        name,
        "agent",
        8,
        "available",
    )
    assert main([*admin, "hosts", "list", "--region", REGION]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-1] == "DRIVER"
    assert [row.split()[-1] for row in table[1:] if row.split()[0] == name] == ["agent"]
    assert main([*admin, "join-tokens", "list"]) == 0
    listed = capsys.readouterr().out
    assert "used" in listed and token.split("_", 3)[-1] not in listed  # no secret shown
    with server.client() as http:
        simulated = http.get("/admin/v1/fleet/hosts").json()["hosts"]
    assert {h["driver"] for h in simulated} == {"agent"}
    assert main([*admin, "join-tokens", "create", "--region", REGION]) == 0
    spare = capsys.readouterr().out.strip().splitlines()[-1]
    spare_id = "_".join(spare.split("_")[1:3])
    assert main([*admin, "--json", "join-tokens", "revoke", spare_id]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "revoked"
    with pytest.raises(ServerRefused):
        _agent(server).enroll(spare, _inventory(_name("late")))


def test_a_bad_expired_revoked_or_reused_token_is_refused_and_creates_nothing(
    server: ServerProcess,
):
    with server.client() as http:
        used = issue_token(http)["token"]
        _agent(server).enroll(used, _inventory(_name("first")))
        before = _fleet_state(http)
        expired = issue_token(http, ttl_seconds=0.5)["token"]
        revoked = issue_token(http)
        assert http.delete(f"/admin/v1/join-tokens/{revoked['id']}").status_code == 200
        time.sleep(0.6)
        forged = used[:-4] + ("AAAA" if not used.endswith("AAAA") else "BBBB")
        cases = [
            ("not-a-token", 401),
            (forged, 401),
            (expired, 403),
            (revoked["token"], 403),
            (used, 403),  # reused by another host
        ]
        for token, status in cases:
            with pytest.raises(ServerRefused) as refused:
                _agent(server).enroll(token, _inventory(_name("intruder")))
            assert refused.value.status == status, (token, refused.value)
        raw = httpx.post(
            f"{server.base_url}/agent/v1/enroll",
            json={"join_token": "x", "public_key": "y", "inventory": {}},
        )
        assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
        assert _fleet_state(http) == before


def test_the_same_agent_may_retry_its_enrollment_but_no_other_key_may_take_the_host(
    server: ServerProcess,
):
    with server.client() as http:
        token = issue_token(http)["token"]
    agent, name = _agent(server), _name("gpu")
    first = agent.enroll(token, _inventory(name))
    assert agent.enroll(token, _inventory(name))["host_id"] == first["host_id"]
    with pytest.raises(ServerRefused) as refused:
        _agent(server).enroll(token, _inventory(name))
    assert refused.value.status == 403


def test_one_hosts_credential_cannot_read_or_write_another_hosts_records(
    server: ServerProcess,
):
    with server.client() as http:
        a, b = _agent(server), _agent(server)
        a.enroll(issue_token(http)["token"], _inventory(_name("gpu-a")))
        b_name = _name("gpu-b")
        b.enroll(issue_token(http)["token"], _inventory(b_name))
        body = {
            "cluster_id": "c-1",
            "secrets": {"munge.key": "b-only"},
            "node": {"node_name": "n", "instance_id": "i", "role": "gpu_worker", "hostname": "n-b"},
        }
        assert http.put(f"/admin/v1/agents/{b_name}/assignment", json=body).status_code == 200
    assignment, _ = b.assignment(0)
    assert assignment.secrets == {"munge.key": "b-only"}
    own_id = a.host_id
    a.host_id = b.host_id  # a's key, claiming b's host: the signature does not verify
    with pytest.raises(ServerRefused) as refused:
        a.assignment(0)
    assert refused.value.status == 401
    a.host_id = own_id
    for method, tail in (("GET", "assignment?after_generation=0"), ("POST", "status")):
        path = f"/agent/v1/hosts/{b.host_id}/{tail}"
        headers = sign_headers(a.key, host_id=a.host_id, method=method, path=path, body=b"")
        answer = httpx.request(method, server.base_url + path, headers=headers)
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["type"] == "permission_denied"
        assert "munge" not in answer.text


def test_unsigned_replayed_stale_or_altered_requests_are_refused(server: ServerProcess):
    with server.client() as http:
        agent = _agent(server)
        agent.enroll(issue_token(http)["token"], _inventory(_name("gpu")))
    path = f"/agent/v1/hosts/{agent.host_id}/status"
    body = b'{"generation_applied": 0, "phase": "idle"}'
    url = server.base_url + path

    def post(headers: dict[str, str], content: bytes = body) -> httpx.Response:
        return httpx.post(
            url, headers={**headers, "content-type": "application/json"}, content=content
        )

    assert post({}).status_code == 401
    signed = sign_headers(agent.key, host_id=agent.host_id, method="POST", path=path, body=body)
    assert post(signed).status_code == 200
    replay = post(signed)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]["message"]
    fresh = sign_headers(agent.key, host_id=agent.host_id, method="POST", path=path, body=body)
    assert post(fresh, b'{"generation_applied": 9, "phase": "idle"}').status_code == 401
    stale = sign_headers(
        agent.key,
        host_id=agent.host_id,
        method="POST",
        path=path,
        body=body,
        now_ms=int((time.time() - 3600) * 1000),
    )
    assert post(stale).status_code == 401
    bad = sign_headers(agent.key, host_id=agent.host_id, method="POST", path=path, body=body)
    assert post({**bad, wire.SIGNATURE_HEADER: "!!"}).status_code == 401


def test_an_assignment_poll_answers_at_once_on_a_newer_generation_and_waits_otherwise(
    server: ServerProcess,
):
    with server.client() as http:
        agent, name = _agent(server), _name("gpu")
        agent.enroll(issue_token(http)["token"], _inventory(name))
        first, _ = agent.assignment(-1)
        assert first.generation == 0 and first.cluster_id is None
        started = time.monotonic()
        same, _ = agent.assignment(0)  # nothing newer: waits the server's 2 s
        assert same.generation == 0 and time.monotonic() - started >= 1.8
        body = {
            "cluster_id": "c-1",
            "node": {"node_name": "n", "instance_id": "i", "role": "gpu_worker", "hostname": "n1"},
        }
        published = http.put(f"/admin/v1/agents/{name}/assignment", json=body).json()
        assert published["generation"] == 1
        again = http.put(f"/admin/v1/agents/{name}/assignment", json=body).json()
        assert again["generation"] == 1  # same content, same generation
        started = time.monotonic()
        newer, _ = agent.assignment(0)
        assert newer.generation == 1 and time.monotonic() - started < 1.0

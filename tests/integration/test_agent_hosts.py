"""Real agent processes on fake hosts, against a real server: converge, restart, release,
silence, health, clusters with their users, SSH CA and shared volume, and acceptance
tests run by the agents' check commands.

Each host has its own mount and UTS namespaces (see `tests.support.agents`), so bind
mounts and the host name are real and stay on this machine; every host's `/shared` is the
one directory the server's region keeps its volumes in. Needs root.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clusterplane.domain.accounts import login_uids
from tests.support.agents import (
    DRIVER_VERSION,
    REGION,
    AgentProcess,
    FakeHost,
    agent_server,
    agent_view,
    enrolled,
    issue_token,
    needs_root,
    wait_for,
)
from tests.support.check_scripts import FAILING_GPU_MESSAGE
from tests.support.server import ServerProcess

pytestmark = pytest.mark.usefixtures("root_only")


@pytest.fixture
def root_only() -> None:
    needs_root()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared filesystem every host and the server mount (a directory here)."""
    return tmp_path_factory.mktemp("shared-fs")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> Iterator[ServerProcess]:
    """One server (agents silent for 2 s are Unknown); each test has its own hosts."""
    needs_root()
    workdir = tmp_path_factory.mktemp("agent-hosts")
    with agent_server(workdir, silence_seconds=2.0, shared=shared) as proc:
        yield proc


Started = tuple[FakeHost, AgentProcess]


@pytest.fixture
def start_host(
    server: ServerProcess, tmp_path: Path, shared: Path
) -> Iterator[Callable[..., Started]]:
    """Enroll a new fake host with a fresh join token and run its agent."""
    made: list[Started] = []

    def start(failing_checks: tuple[str, ...] = ()) -> Started:
        name = f"gpu-{uuid.uuid4().hex[:6]}"
        host = FakeHost(tmp_path, name, shared=shared, failing_checks=failing_checks)
        agent = AgentProcess(host, server)
        made.append((host, agent))
        with server.client() as http:
            agent.start(issue_token(http)["token"])
            wait_for(lambda: enrolled(http, host.name, 0, "idle"), "enrollment")
        return host, agent

    yield start
    with server.client() as http:
        for host, agent in made:
            # Drained: the next test's clusters land on that test's own hosts.
            assert http.post(f"/admin/v1/fleet/hosts/{host.name}/drain").status_code == 200
            agent.stop()
            host.close()


ASSIGNMENT = {
    "cluster_id": "c-agent",
    "node": {"node_name": "w1", "instance_id": "i-w1", "role": "gpu_worker", "hostname": "c1-w1"},
    "users": [{"name": "alice", "uid": 2001, "authorized_keys": ["ssh-ed25519 AAAA alice"]}],
    "ssh_user_ca_keys": ["ssh-ed25519 AAAACA cluster-ca"],
    "mounts": [{"volume_id": "vol-1", "source": "volumes/vol-1", "target": "/home"}],
    "secrets": {"munge.key": "c2VjcmV0"},
}


def _publish(http: httpx.Client, host: FakeHost, body: dict[str, Any] | None) -> int:
    path = f"/admin/v1/agents/{host.name}/assignment"
    response = http.put(path, json=body) if body else http.delete(path)
    assert response.status_code == 200, response.text
    generation: int = response.json()["generation"]
    return generation


def _events(http: httpx.Client, host: FakeHost) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = http.get(
        "/admin/v1/health/events", params={"host_name": host.name}
    ).json()["events"]
    return events


def test_an_agent_converges_and_a_restart_mid_assignment_duplicates_nothing(start_host):
    host, agent = start_host()
    shared = host.root / "shared"
    shared.rename(host.root / "shared-later")  # the shared filesystem is not there yet
    with agent.server.client() as http:
        generation = _publish(http, host, ASSIGNMENT)
        view = wait_for(lambda: enrolled(http, host.name, generation, "failed"), "partial")
        assert view["report"]["sections"]["mounts"]["ok"] is False
        assert view["report"]["sections"]["users"]["ok"] is True
        host.kernel_xid(gpu=1, code=13)
        wait_for(lambda: [e for e in _events(http, host) if e["kind"] == "xid"], "the XID")
        agent.kill()
        (host.root / "shared-later").rename(shared)
        agent.start()  # no join token: the state dir has the key and the enrollment
        wait_for(lambda: enrolled(http, host.name, generation, "ready"), "converged")
        agent.kill()
        agent.start()
        wait_for(
            lambda: (
                agent_view(http, host.name)["last_seen_at"] > view["last_seen_at"]
                and enrolled(http, host.name, generation, "ready")
            ),
            "converged after a second restart",
        )
        assert [e["kind"] for e in _events(http, host) if e["kind"] != "heartbeat_loss"] == ["xid"]
    assert host.entries("passwd", "alice") == host.entries("group", "alice") == 1
    assert host.entries("shadow", "alice") == 1
    assert host.mounts() == [str(host.root / "home")]
    assert (shared / "volumes" / "vol-1" / "alice" / ".ssh" / "authorized_keys").exists()
    assert host.hostname() == "c1-w1"
    secret = host.root / "etc/clusterplane/secrets/munge.key"
    assert secret.read_text() == "c2VjcmV0" and secret.stat().st_mode & 0o777 == 0o600
    assert (
        "TrustedUserCAKeys"
        in (host.root / "etc/ssh/sshd_config.d/50-clusterplane.conf").read_text()
    )


def test_a_released_host_is_returned_clean(start_host):
    host, agent = start_host()
    with agent.server.client() as http:
        generation = _publish(http, host, ASSIGNMENT)
        wait_for(lambda: enrolled(http, host.name, generation, "ready"), "converged")
        assert host.mounts() == [str(host.root / "home")]
        released = _publish(http, host, None)
        wait_for(lambda: enrolled(http, host.name, released, "idle"), "cleaned")
    assert host.mounts() == []
    assert host.entries("passwd", "alice") == host.entries("shadow", "alice") == 0
    assert not (host.root / "etc/clusterplane/secrets").exists()
    assert not (host.root / "etc/ssh/sshd_config.d/50-clusterplane.conf").exists()
    assert host.hostname() == host.name
    data = host.root / "shared" / "volumes" / "vol-1"
    assert data.is_dir()  # the volume's data stays on the shared filesystem


def _silences(http: httpx.Client, host: FakeHost) -> list[dict[str, Any]]:
    return [e for e in _events(http, host) if e["kind"] == "heartbeat_loss"]


def _create(http: httpx.Client, name: str, gpus: int = 8, **extra: Any) -> str:
    created = http.post(
        "/v1/compute/clusters",
        json={
            "cluster_name": name,
            "billing_type": "ON_DEMAND",
            "gpu_type": "H100_SXM",
            "num_gpus": gpus,
            "region": REGION,
            "nvidia_version_id": DRIVER_VERSION,
            **extra,
        },
    )
    assert created.status_code == 200, created.text
    cluster_id: str = created.json()["cluster_id"]
    return cluster_id


def _ready(http: httpx.Client, cluster_id: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        body: dict[str, Any] = http.get(f"/v1/compute/clusters/{cluster_id}").json()
        return body if body["status"] == "Ready" else None

    return wait_for(ready, "the cluster Ready", timeout=30)


def _cluster_on(http: httpx.Client, name: str, gpus: int = 8, **extra: Any) -> dict[str, Any]:
    """A cluster brought up on agent hosts, acceptance tests run by their agents."""
    return _ready(http, _create(http, name, gpus, **extra))


def _host_row(http: httpx.Client, name: str) -> dict[str, Any]:
    [row] = [h for h in http.get("/admin/v1/fleet/hosts").json()["hosts"] if h["name"] == name]
    return row


def test_a_silent_agent_makes_its_host_unknown_and_nothing_is_terminated(start_host):
    host, agent = start_host()
    with agent.server.client() as http:
        cluster = _cluster_on(http, f"quiet-{uuid.uuid4().hex[:4]}")
        assert _host_row(http, host.name)["cluster_id"] == cluster["cluster_id"]
        agent.kill()
        wait_for(lambda: agent_view(http, host.name)["status"] == "unknown", "Unknown", 10)
        # (On a loaded machine an earlier heartbeat may have come late too: that one is
        # resolved already.)
        [signal] = [e for e in _silences(http, host) if e["resolved_at"] is None]
        assert (signal["action"], signal["remediation_id"]) == ("none", None)
        assert "silence alone" in signal["held_reason"]
        health = http.get(f"/admin/v1/clusters/{cluster['cluster_id']}/health").json()
        assert health["open_remediations"] == [] and health["unhealthy_workers"] == 0
        assert [n["cordoned_by"] for n in health["nodes"]] == [None]
        now = http.get(f"/v1/compute/clusters/{cluster['cluster_id']}").json()
        assert now["status"] == "Ready"
        assert _host_row(http, host.name)["state"] == "allocated"
        agent.start()
        wait_for(lambda: agent_view(http, host.name)["status"] == "ready", "heard again")
        assert all(e["resolved_at"] is not None for e in _silences(http, host))


def test_a_silent_idle_host_is_not_handed_out_until_its_agent_is_back(start_host):
    host, agent = start_host()
    with agent.server.client() as http:
        agent.kill()
        wait_for(lambda: _host_row(http, host.name)["state"] == "offline", "held out", 10)
        agent.start()
        wait_for(lambda: _host_row(http, host.name)["state"] == "available", "back", 10)


def test_an_xid_in_the_kernel_log_reaches_a_health_event_and_a_remediation(start_host):
    (host, agent), *_ = [start_host() for _ in range(3)]  # one of three: under the stop rule
    with agent.server.client() as http:
        cluster = _cluster_on(http, f"xid-{uuid.uuid4().hex[:4]}", gpus=24)
        host.kernel_xid(gpu=3, code=79)

        def repaired() -> dict[str, Any] | None:
            events = [e for e in _events(http, host) if e["kind"] == "xid"]
            return events[0] if events and events[0]["remediation_id"] else None

        event = wait_for(repaired, "a remediation for the XID")
        assert (event["xid_code"], event["gpu_index"]) == (79, 3)
        assert event["cluster_id"] == cluster["cluster_id"]
        assert event["alert_name"] == "DmesgGpuFallenOffBus"
        agent.kill()
        agent.start()
        wait_for(
            lambda: (
                agent_view(http, host.name)["status"] == "ready"
                and agent_view(http, host.name)["generation_applied"] >= 0
            ),
            "the agent back",
        )
        host.kernel_xid(gpu=0, code=13)
        wait_for(
            lambda: len([e for e in _events(http, host) if e["kind"] == "xid"]) == 2,
            "the second XID",
        )
        codes = sorted(e["xid_code"] for e in _events(http, host) if e["kind"] == "xid")
        assert codes == [13, 79]  # the first line was not reported again after the restart


SSH_CA = {"load_balancer": "NONE", "ssh_ca_enabled": True}


def test_a_cluster_gives_its_hosts_its_users_ca_and_volume_and_takes_them_all_back(
    start_host, shared: Path
):
    host, agent = start_host()
    with agent.server.client() as http:
        cluster = _cluster_on(
            http,
            f"homes-{uuid.uuid4().hex[:4]}",
            cluster_config=SSH_CA,
            shared_volume={"region": REGION, "size_tib": 1, "volume_name": "homes"},
        )
        cluster_id = cluster["cluster_id"]
        ca = http.get(f"/admin/v1/clusters/{cluster_id}/ssh-ca").json()["public_key"]
        # Acceptance ran on the host, through the commands its agent config names.
        assert sorted(host.checks_ran()) == ["dcgm_diag 2", "gpu_burn ", "nccl_single_node "]
        [volume] = cluster["volumes"]
        directory = shared / volume["volume_id"]
        assert host.mounts() == [str(host.root / "mnt/shared"), str(host.root / "home")]
        assert host.entries("passwd", "ubuntu") == 1
        assert (host.root / "etc/ssh/clusterplane_user_ca.pub").read_text() == ca + "\n"
        home = directory / "home" / "ubuntu"  # on the volume, through the bind mounts
        assert home.is_dir() and home.stat().st_uid == login_uids(("ubuntu",))["ubuntu"]
        assert http.delete(f"/v1/compute/clusters/{cluster_id}").status_code == 200
        wait_for(
            lambda: http.get(f"/v1/compute/clusters/{cluster_id}").status_code == 404,
            "the cluster gone",
            timeout=30,
        )
        wait_for(lambda: not directory.exists(), "the inline volume deleted", timeout=30)
    assert host.mounts() == []
    assert host.entries("passwd", "ubuntu") == host.entries("group", "ubuntu") == 0
    assert not (host.root / "etc/ssh/clusterplane_user_ca.pub").exists()
    assert not (host.root / "etc/ssh/sshd_config.d/50-clusterplane.conf").exists()


def test_a_host_whose_check_fails_fails_acceptance_with_the_checks_own_words(start_host):
    host, agent = start_host(failing_checks=("dcgm_diag",))
    with agent.server.client() as http:
        cluster_id = _create(http, f"sick-{uuid.uuid4().hex[:4]}")

        def failed_run() -> dict[str, Any] | None:
            runs = http.get("/admin/v1/health/checks", params={"host_name": host.name}).json()
            bad = [r for r in runs["checks"] if r["state"] == "FAILED"]
            return bad[0] if bad else None

        run = wait_for(failed_run, "a failed acceptance check", timeout=30)
        assert (run["purpose"], run["check"], run["cluster_id"]) == (
            "acceptance",
            "dcgm_diag",
            cluster_id,
        )
        assert FAILING_GPU_MESSAGE in run["message"] and "exited 1" in run["message"]
        assert run["result"] == {"failing_gpus": [3], "error": "memory"}
        [signal] = [e for e in _events(http, host) if e["kind"] == "active_check"]
        assert "acceptance test failed" in signal["message"]
        health = http.get(f"/admin/v1/clusters/{cluster_id}/health").json()
        assert [n["health"] for n in health["nodes"]] == ["unhealthy"]
    assert host.checks_ran()[0] == "dcgm_diag 2"

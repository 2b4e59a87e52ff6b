"""Real agent processes on fake hosts, against a real server: converge, restart, release,
an XID from the kernel log, and an idle host's silence.

Each host has its own mount and UTS namespaces (see `tests.support.agents`), so bind
mounts and the host name are real and stay on this machine. Needs root. Clusters on agent
hosts are in tests/integration/test_agent_clusters.py (in-process) and
tests/e2e/test_slurm_clusters.py (real Slurm).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.agents import (
    AgentProcess,
    FakeHost,
    agent_server,
    agent_view,
    enrolled,
    issue_token,
    needs_root,
    wait_for,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.usefixtures("root_only")


@pytest.fixture
def root_only() -> None:
    needs_root()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (agents silent for 2 s are Unknown); each test has its own hosts."""
    needs_root()
    workdir = tmp_path_factory.mktemp("agent-hosts")
    with agent_server(workdir, silence_seconds=2.0) as proc:
        yield proc


Started = tuple[FakeHost, AgentProcess]


@pytest.fixture
def start_host(server: ServerProcess, tmp_path: Path) -> Iterator[Callable[[], Started]]:
    """Enroll a new fake host with a fresh join token and run its agent."""
    made: list[Started] = []

    def start() -> Started:
        name = f"gpu-{uuid.uuid4().hex[:6]}"
        host = FakeHost(tmp_path, name)
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


def _host_row(http: httpx.Client, name: str) -> dict[str, Any]:
    [row] = [h for h in http.get("/admin/v1/fleet/hosts").json()["hosts"] if h["name"] == name]
    return row


def test_a_silent_idle_host_is_not_handed_out_until_its_agent_is_back(start_host):
    host, agent = start_host()
    with agent.server.client() as http:
        agent.kill()
        wait_for(lambda: _host_row(http, host.name)["state"] == "offline", "held out", 10)
        agent.start()
        wait_for(lambda: _host_row(http, host.name)["state"] == "available", "back", 10)

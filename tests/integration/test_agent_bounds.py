"""One host's signed requests are bounded: a host (whose root may be a tenant's) cannot
hold every long-poll slot or worker of the server; other hosts are served meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clusterplane.agent.client import AgentClient, ServerRefused
from clusterplane.domain.agent_protocol import Inventory, StatusReport
from tests.support.agents import agent_server, issue_token
from tests.support.server import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    bounded = "[agents]\nmax_inflight_per_host = 2\nlong_poll_seconds = 10\n"
    with agent_server(tmp_path, settings_toml=bounded) as proc:
        yield proc


def enrolled_agent(server: ServerProcess, name: str) -> AgentClient:
    with server.client() as http:
        token = issue_token(http)["token"]
    agent = AgentClient(server.base_url, Ed25519PrivateKey.generate())
    agent.enroll(
        token, Inventory(hostname=name, gpu_source="config", num_cpu_cores=4, memory_gib=8)
    )
    return agent


def wait(agent: AgentClient, generation: int) -> None:
    """Long-poll past `generation`; a 429 while the host's last answer is still being
    given back (its slot returns just after its last byte) is tried again."""
    for _ in range(20):
        try:
            agent.assignment(generation)
            return
        except ServerRefused as exc:
            if exc.status != 429:
                raise
            threading.Event().wait(0.1)


def test_a_host_past_its_requests_in_flight_gets_429_while_another_host_is_served(
    server: ServerProcess,
) -> None:
    greedy, other = enrolled_agent(server, "greedy"), enrolled_agent(server, "other")
    current = greedy.assignment(-1)[0].generation
    waiting = [threading.Thread(target=wait, args=(greedy, current), daemon=True) for _ in "ab"]
    for poll in waiting:
        poll.start()
    idle = StatusReport(generation_applied=current, phase="idle")

    def refused() -> ServerRefused | None:
        try:
            greedy.report(idle)
        except ServerRefused as exc:
            return exc
        return None

    refusal = None
    for _ in range(50):  # until both long-polls are in
        refusal = refused()
        if refusal is not None:
            break
        threading.Event().wait(0.1)
    assert refusal is not None and refusal.status == 429
    assert "this host already has 2 requests in flight" in refusal.message
    assert other.report(StatusReport(generation_applied=-1, phase="idle")) == []
    for poll in waiting:
        poll.join(15)  # their wait ends; the host's slots come back
    assert greedy.report(idle) == []

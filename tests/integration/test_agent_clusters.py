"""Clusters on agent hosts, in-process: what a node is given (users, SSH CA, volumes),
changes applied to running nodes, active checks through the host's agent (acceptance
failing in the check's own words), and a node whose agent falls silent.

The engine runs on a manual clock with instant simulated steps for what has no agent
(control plane, flavour); the agents are `tests.support.inprocess_agent` (real
convergence, check runner and signed client; bind mounts recorded, not made), in a region
whose volumes are directories of a shared directory (`storage.shared_directories`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.clock import ManualClock
from clusterplane.domain.accounts import login_uids
from clusterplane.domain.agent_protocol import SectionResult
from clusterplane.errors import TemporaryProviderError
from clusterplane.providers.registry import Drivers
from clusterplane.services.agents.agent_checks import MAX_OPEN_PER_HOST
from clusterplane.settings import Settings, SimulationSettings, StorageSettings
from clusterplane.simulation.wiring import simulated_drivers
from tests.support import check_scripts
from tests.support.agents import AGENT_FLEET, DRIVER_VERSION, REGION
from tests.support.check_scripts import FAILING_GPU_MESSAGE
from tests.support.engine import WHOLE_REGION, Engine, make_engine
from tests.support.inprocess_agent import InProcessAgent

T = TypeVar("T")
SSH_CA = {"load_balancer": "NONE", "ssh_ca_enabled": True}
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the agent makes accounts and owns their homes to them"
)


def instant(sessions: sessionmaker[Session]) -> Drivers:
    """The simulated drivers with every step instantaneous; the simulated flavour serves
    the agent hosts' clusters too (what is under test here is what a node is given)."""
    drivers = simulated_drivers(
        Settings(simulation=SimulationSettings(duration_factor=0)), sessions
    )
    drivers.flavours_by_host["agent"] = drivers.flavours
    return drivers


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    (tmp_path / "shared").mkdir()
    return tmp_path / "shared"


def agent_engine(tmp_path: Path, shared: Path, **extra: Any) -> Iterator[Engine]:
    fleet = tmp_path / "agent-fleet.yaml"
    fleet.write_text(AGENT_FLEET)
    storage = StorageSettings(shared_directories=(f"{REGION}={shared}",))
    yield from make_engine(
        tmp_path, fleet=fleet, storage=storage, capacity=WHOLE_REGION, drivers=instant, **extra
    )


@pytest.fixture
def engine(tmp_path: Path, shared: Path) -> Iterator[Engine]:
    yield from agent_engine(tmp_path, shared)


@pytest.fixture
def wall() -> ManualClock:
    """Wall time that moves only when a test says: agents' silence is judged on it."""
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def walled_engine(tmp_path: Path, shared: Path, wall: ManualClock) -> Iterator[Engine]:
    """An engine whose API and silence scan read `wall` (signed agent requests stay
    within the clock-skew window as long as `wall` is not moved minutes ahead)."""
    yield from agent_engine(tmp_path, shared, wall_clock=wall, lease_clock=wall)


@contextmanager
def no_op() -> Iterator[None]:
    yield


def drive(
    engine: Engine, agents: list[InProcessAgent], probe: Callable[[], T | None], what: str
) -> T:
    """Controllers and agents take turns until `probe` answers."""
    for _ in range(200):
        engine.advance(10, step=5)
        for agent in agents:
            agent.round()
        found = probe()
        if found:
            return found
    raise AssertionError(f"never reached: {what}")


def create_cluster(engine: Engine, num_gpus: int = 8, **extra: Any) -> str:
    created = engine.client.post(
        "/v1/compute/clusters",
        json={
            "cluster_name": "on-agents",
            "billing_type": "ON_DEMAND",
            "gpu_type": "H100_SXM",
            "num_gpus": num_gpus,
            "region": REGION,
            "nvidia_version_id": DRIVER_VERSION,
            **extra,
        },
        headers=engine.headers(),
    )
    assert created.status_code == 200, created.text
    cluster_id: str = created.json()["cluster_id"]
    return cluster_id


def cluster(engine: Engine, cluster_id: str) -> dict[str, Any]:
    body: dict[str, Any] = engine.client.get(
        f"/v1/compute/clusters/{cluster_id}", headers=engine.headers()
    ).json()
    return body


def ready(engine: Engine, cluster_id: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        body = cluster(engine, cluster_id)
        return body if body["status"] == "Ready" else None

    return probe


def accounts(agent: InProcessAgent) -> dict[str, int]:
    return {row[0]: int(row[2]) for row in agent.ops.entries("passwd") if row[0] != "root"}


def agent_view(engine: Engine, agent: InProcessAgent) -> dict[str, Any]:
    view: dict[str, Any] = engine.client.get(
        f"/admin/v1/agents/{agent.name}", headers=engine.headers()
    ).json()
    return view


def test_a_node_on_an_agent_host_gets_the_clusters_users_ssh_ca_and_volume_and_is_accepted(
    engine: Engine, tmp_path: Path, shared: Path
):
    checks = tmp_path / "checks"
    agent = InProcessAgent(
        engine,
        tmp_path,
        "gpu-a",
        region=REGION,
        checks=check_scripts.commands(checks),
        shared=shared,
    )
    cluster_id = create_cluster(
        engine,
        cluster_config=SSH_CA,
        shared_volume={"region": REGION, "size_tib": 1, "volume_name": "team"},
    )
    body = drive(engine, [agent], ready(engine, cluster_id), "the cluster Ready")
    [volume] = body["volumes"]
    [worker] = body["gpu_worker_nodes"]
    assert worker["host_name"] == "gpu-a"
    ubuntu = login_uids(("ubuntu",))["ubuntu"]
    assert accounts(agent) == {"ubuntu": ubuntu}
    ca = engine.client.get(f"/admin/v1/clusters/{cluster_id}/ssh-ca", headers=engine.headers())
    assert agent.ops.read("/etc/ssh/clusterplane_user_ca.pub") == ca.json()["public_key"] + "\n"
    directory = shared.resolve() / volume["volume_id"]
    assert directory.stat().st_mode & 0o7777 == 0o1777  # made by the storage driver
    assert agent.ops.mounts == {"/mnt/shared": str(directory), "/home": str(directory / "home")}
    assert agent.ops.path("/home/ubuntu").stat().st_uid == ubuntu
    # Acceptance ran through the agent: the scripts its config names, at the asked level.
    assert sorted(check_scripts.ran(checks)) == [
        "dcgm_diag 2",
        "gpu_burn ",
        "nccl_single_node ",
    ]
    assert {c["state"] for c in agent_view(engine, agent)["checks"]} == {"done"}


def test_a_new_ssh_policy_or_ca_reaches_running_nodes_without_taking_them_down(
    engine: Engine, tmp_path: Path
):
    agent = InProcessAgent(engine, tmp_path, "gpu-b", region=REGION)
    cluster_id = create_cluster(
        engine, cluster_config=SSH_CA, acceptance_tests_params={"enabled": False}
    )
    drive(engine, [agent], ready(engine, cluster_id), "the cluster Ready")
    policy = engine.client.put(
        f"/admin/v1/clusters/{cluster_id}/ssh-policy",
        json={"allowed_logins": ["alice", "root", "bob"]},
        headers=engine.headers(),
    )
    assert policy.status_code == 200, policy.text
    uids = login_uids(("alice", "bob"))

    def moved() -> bool:
        [worker] = cluster(engine, cluster_id)["gpu_worker_nodes"]
        assert worker["status"] == "Running", "a running node keeps running while it changes"
        return accounts(agent) == uids

    drive(engine, [agent], moved, "alice and bob instead of ubuntu")
    before = agent.ops.read("/etc/ssh/clusterplane_user_ca.pub")
    rotated = engine.client.post(
        f"/admin/v1/clusters/{cluster_id}/credentials/rotate", headers=engine.headers()
    ).json()
    drive(
        engine,
        [agent],
        lambda: agent.ops.read("/etc/ssh/clusterplane_user_ca.pub") != before,
        "the new CA trusted",
    )
    assert agent.ops.read("/etc/ssh/clusterplane_user_ca.pub") == (
        rotated["ssh_ca_public_key"] + "\n"
    )
    assert cluster(engine, cluster_id)["status"] == "Ready"


def run_check(engine: Engine, agent: InProcessAgent, check: str, **extra: Any) -> dict[str, Any]:
    started = engine.client.post(
        "/admin/v1/health/checks",
        json={"host_name": agent.name, "check": check, **extra},
        headers=engine.headers(),
    )
    assert started.status_code == 200, started.text
    path = f"/admin/v1/health/checks/{started.json()['id']}"

    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = engine.client.get(path, headers=engine.headers()).json()
        return run if run["state"] in ("PASSED", "FAILED") else None

    return drive(engine, [agent], finished, f"the {check} run finished")


def test_an_on_demand_check_runs_on_the_agent_and_a_kind_without_a_command_fails(
    engine: Engine, tmp_path: Path
):
    only_dcgm = {"dcgm_diag": check_scripts.commands(tmp_path / "checks")["dcgm_diag"]}
    agent = InProcessAgent(engine, tmp_path, "gpu-c", region=REGION, checks=only_dcgm)
    passed = run_check(engine, agent, "dcgm_diag", level=1)
    assert (passed["state"], passed["result"]) == ("PASSED", {"failing_gpus": []})
    assert check_scripts.ran(tmp_path / "checks") == ["dcgm_diag 1"]
    failed = run_check(engine, agent, "gpu_burn")
    assert failed["state"] == "FAILED"
    assert "no command for gpu_burn checks ([checks.gpu_burn]" in failed["message"]


def test_a_host_has_a_bounded_number_of_checks_waiting_for_its_agent(
    engine: Engine, tmp_path: Path
):
    agent = InProcessAgent(engine, tmp_path, "gpu-d", region=REGION)
    port = engine.app.agent_hosts
    for index in range(MAX_OPEN_PER_HOST):
        port.request_check(agent.host_id, f"run-{index}", "dcgm_diag", 1)
    assert port.request_check(agent.host_id, "run-0", "dcgm_diag", 1).state == "requested"
    with pytest.raises(TemporaryProviderError):
        port.request_check(agent.host_id, "one-too-many", "dcgm_diag", 1)
    agent.round()  # no command configured: each is reported failed, making room
    assert port.request_check(agent.host_id, "one-too-many", "dcgm_diag", 1)
    run = port.observe_check(agent.host_id, "run-3")
    assert run is not None and run.state == "failed" and "no command" in run.message


def test_acceptance_asks_every_worker_for_all_its_checks_at_once(engine: Engine, tmp_path: Path):
    agents = [
        InProcessAgent(
            engine, tmp_path, name, region=REGION, checks=check_scripts.commands(tmp_path / name)
        )
        for name in ("gpu-e", "gpu-f")
    ]
    cluster_id = create_cluster(engine, num_gpus=16)
    for _ in range(200):
        engine.advance(10, step=5)
        asked = {a.name: agent_view(engine, a)["checks"] for a in agents}
        if any(asked.values()):
            break
        for agent in agents:
            agent.round()
    for checks in asked.values():  # before any agent ran one: the workers test in parallel
        assert sorted((c["kind"], c["state"]) for c in checks) == [
            ("dcgm_diag", "requested"),
            ("gpu_burn", "requested"),
            ("nccl_single_node", "requested"),
        ]
    drive(engine, agents, ready(engine, cluster_id), "the cluster Ready")


def health_events(engine: Engine, agent: InProcessAgent, kind: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = engine.client.get(
        "/admin/v1/health/events", params={"host_name": agent.name}, headers=engine.headers()
    ).json()["events"]
    return [e for e in events if e["kind"] == kind]


def fleet_host(engine: Engine, name: str) -> dict[str, Any]:
    hosts = engine.client.get("/admin/v1/fleet/hosts", headers=engine.headers()).json()
    [row] = [h for h in hosts["hosts"] if h["name"] == name]
    return row


def test_a_host_whose_check_fails_fails_acceptance_with_the_checks_own_words(
    engine: Engine, tmp_path: Path
):
    checks = tmp_path / "checks"
    commands = check_scripts.commands(checks, failing=("dcgm_diag",))
    agent = InProcessAgent(engine, tmp_path, "gpu-g", region=REGION, checks=commands)
    cluster_id = create_cluster(engine)

    def failed_run() -> dict[str, Any] | None:
        runs = engine.client.get(
            "/admin/v1/health/checks", params={"host_name": agent.name}, headers=engine.headers()
        ).json()
        bad = [r for r in runs["checks"] if r["state"] == "FAILED"]
        return bad[0] if bad else None

    run = drive(engine, [agent], failed_run, "a failed acceptance check")
    assert (run["purpose"], run["check"], run["cluster_id"]) == (
        "acceptance",
        "dcgm_diag",
        cluster_id,
    )
    assert FAILING_GPU_MESSAGE in run["message"] and "exited 1" in run["message"]
    assert run["result"] == {"failing_gpus": [3], "error": "memory"}
    [signal] = health_events(engine, agent, "active_check")
    assert "acceptance test failed" in signal["message"]
    health = engine.client.get(
        f"/admin/v1/clusters/{cluster_id}/health", headers=engine.headers()
    ).json()
    assert [n["health"] for n in health["nodes"]] == ["unhealthy"]
    assert "dcgm_diag 2" in check_scripts.ran(checks)  # at the acceptance level


def test_a_silent_agent_makes_its_host_unknown_and_nothing_is_terminated(
    walled_engine: Engine, wall: ManualClock, tmp_path: Path
):
    engine = walled_engine
    agent = InProcessAgent(engine, tmp_path, "gpu-q", region=REGION)
    cluster_id = create_cluster(engine, acceptance_tests_params={"enabled": False})
    body = drive(engine, [agent], ready(engine, cluster_id), "the cluster Ready")
    assert fleet_host(engine, agent.name)["cluster_id"] == cluster_id
    [worker] = body["gpu_worker_nodes"]
    grace = engine.app.manager.ctx.settings.agents.silence_grace_seconds
    wall.advance(grace - 1)  # the agent stops reporting
    engine.advance(10)
    assert agent_view(engine, agent)["status"] == "ready"  # within the grace period
    wall.advance(2)
    engine.advance(10)
    assert agent_view(engine, agent)["status"] == "unknown"
    engine.advance(3600)  # an hour of fleet time with the agent still silent
    [signal] = health_events(engine, agent, "heartbeat_loss")
    assert signal["resolved_at"] is None
    assert (signal["action"], signal["remediation_id"]) == ("none", None)
    assert "silence alone" in signal["held_reason"]
    health = engine.client.get(
        f"/admin/v1/clusters/{cluster_id}/health", headers=engine.headers()
    ).json()
    assert health["open_remediations"] == [] and health["unhealthy_workers"] == 0
    assert [n["cordoned_by"] for n in health["nodes"]] == [None]
    now = cluster(engine, cluster_id)
    assert now["status"] == "Ready" and now["gpu_worker_nodes"] == [worker]
    assert fleet_host(engine, agent.name)["state"] == "allocated"
    agent.round()  # heard again
    engine.advance(10)
    assert agent_view(engine, agent)["status"] == "ready"
    [resolved] = health_events(engine, agent, "heartbeat_loss")
    assert resolved["resolved_at"] is not None


def report_runtime(agent: InProcessAgent, **details: Any) -> None:
    """The agent reports a flavour runtime section saying `details`, besides what it did."""
    section = SectionResult(ok=True, details={"phase": "ready", **details})
    sections = {**agent.status.sections, "runtime:kubernetes": section}
    agent.status = agent.status.model_copy(update={"sections": sections})
    agent.client.report(agent.status)


def test_a_hung_node_daemon_leads_to_a_repair_only_once_the_scheduler_lost_the_node_too(
    engine: Engine, tmp_path: Path
):
    agents = [InProcessAgent(engine, tmp_path, f"gpu-{n}", region=REGION) for n in "uvw"]
    cluster_id = create_cluster(engine, num_gpus=24, acceptance_tests_params={"enabled": False})
    body = drive(engine, agents, ready(engine, cluster_id), "the cluster Ready")
    names = {n["node_name"] for n in body["gpu_worker_nodes"]}
    hung, other, _ = agents
    [victim] = [n["node_name"] for n in body["gpu_worker_nodes"] if n["host_name"] == hung.name]
    down = {victim: {"ready": False, "reason": "NodeStatusUnknown"}}
    hung_kubelet = {"name": "kubelet", "ok": False, "message": "the kubelet does not answer"}

    report_runtime(hung, daemon_health=hung_kubelet)  # the scheduler still runs the node
    report_runtime(other, node_conditions={n: {"ready": True} for n in names})
    engine.advance(10)
    assert health_events(engine, hung, "scheduler_node_down") == []
    report_runtime(hung, daemon_health={**hung_kubelet, "ok": True})  # daemon fine, node down
    report_runtime(other, node_conditions=down)
    engine.advance(10)
    assert health_events(engine, hung, "scheduler_node_down") == []
    assert cluster(engine, cluster_id)["status"] == "Ready"

    report_runtime(hung, daemon_health=hung_kubelet)  # both agree
    engine.advance(10)
    [signal] = health_events(engine, hung, "scheduler_node_down")
    assert "the kubelet does not answer" in signal["message"] and victim in signal["message"]
    assert signal["action"] == "replace" and signal["remediation_id"] is not None
    assert cluster(engine, cluster_id)["status"] == "Degraded"
    report_runtime(hung, daemon_health=hung_kubelet)  # still hung: no second signal
    assert len(health_events(engine, hung, "scheduler_node_down")) == 1
    report_runtime(hung, daemon_health={**hung_kubelet, "ok": True})
    [resolved] = health_events(engine, hung, "scheduler_node_down")
    assert resolved["resolved_at"] is not None
    assert health_events(engine, other, "scheduler_node_down") == []

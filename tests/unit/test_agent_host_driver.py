"""`AgentHostDriver` against a port kept in memory: what it publishes for a node, when it
publishes again, and how it judges an agent's checks by silence and time."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from clusterplane.domain.agent_protocol import SectionResult
from clusterplane.domain.checks import CheckKind, CheckPurpose
from clusterplane.domain.enums import NodePhase, NodeRole
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.agent import AgentHostDriver
from clusterplane.providers.agent.checks import REPORT_DEADLINE
from clusterplane.providers.agent_port import CheckRun, DesiredNode, Observation
from clusterplane.providers.models import (
    CheckSpec,
    HostSpec,
    InstanceSpec,
    NodeAccess,
    NodeMount,
    NodeUser,
)

NOW = datetime(2026, 5, 1, tzinfo=UTC)
ACCESS = NodeAccess(
    users=(NodeUser("ubuntu", 20001),),
    ssh_user_ca_keys=("ssh-ed25519 AAAAC3 ca",),
    mounts=(NodeMount("v1", "v1", "/mnt/shared"), NodeMount("v1", "v1/home", "/home")),
)
NODE = InstanceSpec(
    instance_id="i-1",
    cluster_id="c-1",
    role=NodeRole.GPU_WORKER,
    node_name="c1-w1",
    host_name="gpu-1",
    region="r",
    gpu_type="H100_SXM",
    num_gpus=8,
    image="ubuntu-22.04",
    driver="agent",
    host_id="h-1",
    access=ACCESS,
)
HOST = HostSpec("gpu-1", "r", "H100_SXM", 8, "agent", "h-1")
CHECK = CheckSpec("run-1", CheckKind.DCGM_DIAG, 2, CheckPurpose.ON_DEMAND)


@dataclass
class MemoryPort:
    """The port, with the agent's side played by the test (`converge`, `report`)."""

    published: list[DesiredNode | None] = field(default_factory=list)
    applied: int = 0
    phase: str = "idle"
    status: str = "ready"
    checks: dict[str, CheckRun] = field(default_factory=dict)

    def publish(self, host_id: str, desired: DesiredNode | None) -> int:
        if not self.published or self.published[-1] != desired:
            self.published.append(desired)
        return len(self.published)

    def release(self, host_id: str) -> int:
        return self.publish(host_id, None)

    def observe(self, host_id: str) -> Observation | None:
        last = self.published[-1] if self.published else None
        return Observation(
            host_id=host_id,
            status=self.status,
            last_seen_at=NOW,
            generation_published=len(self.published),
            generation_applied=self.applied,
            cluster_id=last.cluster_id if last else None,
            phase=self.phase,
            node_phase=None,
            sections={"users": SectionResult(ok=self.phase != "failed", message="uid taken")},
        )

    def converge(self, phase: str = "ready") -> None:
        self.applied, self.phase = len(self.published), phase

    def request_check(self, host_id: str, run_id: str, kind: str, level: int | None) -> CheckRun:
        return self.checks.setdefault(run_id, CheckRun(run_id, kind, level, "requested", NOW))

    def observe_check(self, host_id: str, run_id: str) -> CheckRun | None:
        return self.checks.get(run_id)

    def report(self, run_id: str, state: str, message: str = "", **figures: object) -> None:
        self.checks[run_id] = replace(
            self.checks[run_id], state=state, message=message, figures=dict(figures)
        )


def test_a_node_is_published_with_its_users_ca_and_mounts():
    port = MemoryPort()
    AgentHostDriver(port).prepare(NODE, NOW)
    [desired] = port.published
    assert desired is not None and desired.node.hostname == "c1-w1"
    assert [(u.name, u.uid) for u in desired.users] == [("ubuntu", 20001)]
    assert desired.ssh_user_ca_keys == ("ssh-ed25519 AAAAC3 ca",)
    assert [(m.source, m.target) for m in desired.mounts] == [
        ("v1", "/mnt/shared"),
        ("v1/home", "/home"),
    ]


def test_describe_publishes_again_only_when_what_the_node_gives_changed():
    port = MemoryPort()
    driver = AgentHostDriver(port)
    state = driver.prepare(NODE, NOW).state
    port.converge()
    running = driver.describe(NODE, state, NOW)
    assert running.done and len(port.published) == 1
    assert driver.describe(NODE, running.state, NOW).state == running.state
    rotated = replace(NODE, access=replace(ACCESS, ssh_user_ca_keys=("ssh-ed25519 AAAAC3 new",)))
    changing = driver.describe(rotated, running.state, NOW)
    assert len(port.published) == 2 and port.published[-1] is not None
    assert port.published[-1].ssh_user_ca_keys == ("ssh-ed25519 AAAAC3 new",)
    # The agent applies it in place: the node serves on meanwhile.
    assert (changing.done, changing.phase) == (True, NodePhase.RUNNING)
    port.phase = "converging"
    assert driver.describe(rotated, changing.state, NOW).phase == NodePhase.RUNNING
    port.converge("failed")
    failed = driver.describe(rotated, changing.state, NOW)
    assert failed.failed and "uid taken" in failed.message


def test_a_node_not_yet_running_bootstraps_until_its_agent_converged():
    port = MemoryPort()
    driver = AgentHostDriver(port)
    prepared = driver.prepare(NODE, NOW)
    assert (prepared.done, prepared.phase) == (False, NodePhase.BOOTSTRAPPING)
    port.phase = "converging"
    assert driver.describe(NODE, prepared.state, NOW).phase == NodePhase.BOOTSTRAPPING


def test_a_login_the_agent_protocol_cannot_carry_fails_the_node_naming_it():
    bad = replace(NODE, access=NodeAccess(users=(NodeUser("Bad Name", 20001),)))
    with pytest.raises(PermanentProviderError) as failure:
        AgentHostDriver(MemoryPort()).prepare(bad, NOW)
    assert "name 'Bad Name'" in failure.value.message


def test_a_check_is_asked_for_once_and_its_figures_are_answered_again_after_it_finished():
    port = MemoryPort()
    driver = AgentHostDriver(port)
    started = driver.start_check(HOST, CHECK, NOW)
    assert not started.done and not started.failed
    assert driver.start_check(HOST, CHECK, NOW).state["run_id"] == "run-1"
    assert list(port.checks) == ["run-1"]
    port.report("run-1", "done", failing_gpus=[])
    done = driver.poll_check(HOST, CHECK, started.state, NOW)
    assert done.done and done.figures == {"failing_gpus": []}
    port.checks.clear()  # the port's record pruned: the state still answers
    assert driver.poll_check(HOST, CHECK, done.state, NOW) == done


def test_a_check_the_agent_could_not_run_fails_with_its_message_and_figures():
    port = MemoryPort()
    driver = AgentHostDriver(port)
    started = driver.start_check(HOST, CHECK, NOW)
    port.report("run-1", "failed", "dcgm_diag exited 1: GPU 3", failing_gpus=[3])
    failed = driver.poll_check(HOST, CHECK, started.state, NOW)
    assert failed.failed and failed.message == "dcgm_diag exited 1: GPU 3"
    assert failed.figures == {"failing_gpus": [3]}


def test_an_outstanding_check_fails_when_the_agent_goes_silent_or_past_its_deadline():
    port = MemoryPort()
    driver = AgentHostDriver(port)
    started = driver.start_check(HOST, CHECK, NOW)
    late = driver.poll_check(HOST, CHECK, started.state, NOW + REPORT_DEADLINE)
    assert late.failed and "did not report" in late.message
    port.status = "unknown"
    silent = driver.poll_check(HOST, CHECK, started.state, NOW + timedelta(seconds=1))
    assert silent.failed and "silent" in silent.message


def test_a_check_on_a_host_without_an_agent_or_without_a_record_fails_permanently():
    port = MemoryPort()
    driver = AgentHostDriver(port)
    with pytest.raises(PermanentProviderError):
        driver.start_check(replace(HOST, host_id=""), CHECK, NOW)
    state = {"run_id": "run-1", "started_at": NOW.isoformat()}
    with pytest.raises(PermanentProviderError) as failure:
        driver.poll_check(HOST, CHECK, state, NOW)
    assert "no record of check run run-1" in failure.value.message

"""What the agent does to a host, against a temporary root: idempotent, and cleaned up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clusterplane.agent import runtimes, secrets, sshd
from clusterplane.agent.converge import Node
from clusterplane.agent.hostops import HostOps
from clusterplane.domain.agent_protocol import Assignment, Inventory

INVENTORY = Inventory(hostname="gpu-1", num_cpu_cores=4, memory_gib=8)


class RecordingRuntime:
    """A flavour runtime that records what it was asked (the Slurm one comes elsewhere)."""

    def __init__(self) -> None:
        self.converged: list[dict[str, Any]] = []
        self.torn_down = 0

    def converge(self, section: dict[str, Any], ctx: runtimes.RuntimeContext) -> dict[str, Any]:
        self.converged.append(section)
        (ctx.state_dir / "running").write_text(str(section))
        return {"ok": section.get("fail") is None, "message": section.get("fail", "")}

    def teardown(self, ctx: runtimes.RuntimeContext) -> None:
        self.torn_down += 1
        (ctx.state_dir / "running").unlink(missing_ok=True)


@pytest.fixture
def host(tmp_path: Path) -> tuple[HostOps, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc" / "hostname").write_text("gpu-1\n")
    return HostOps(root, set_kernel_hostname=False), tmp_path / "state"


def _node(host: tuple[HostOps, Path], runtime: RecordingRuntime | None = None) -> Node:
    registry = runtimes.Registry()
    if runtime is not None:
        registry.register("slurm", lambda: runtime)
    ops, state = host
    state.mkdir(exist_ok=True)
    return Node(
        ops, state, shared_fs="/shared", sshd_reload=[], registry=registry, inventory=INVENTORY
    )


def _assignment(generation: int, **overrides: Any) -> Assignment:
    doc: dict[str, Any] = {
        "generation": generation,
        "cluster_id": "c-1",
        "node": {
            "node_name": "w1",
            "instance_id": "i-1",
            "role": "gpu_worker",
            "hostname": "c1-w1",
        },
        "users": [{"name": "alice", "uid": 2001, "authorized_keys": ["ssh-ed25519 AAAA a"]}],
        "ssh_user_ca_keys": ["ssh-ed25519 AAAACA ca"],
        "secrets": {"munge.key": "k3y"},
        "runtimes": {"slurm": {"role": "worker"}},
    }
    doc.update(overrides)
    return Assignment.model_validate(doc)


def _lines(ops: HostOps, database: str, name: str) -> int:
    return sum(1 for row in ops.entries(database) if row[0] == name)


def test_a_node_converges_and_applying_again_changes_nothing(host):
    runtime = RecordingRuntime()
    ops, _ = host
    outcome = _node(host, runtime).apply(_assignment(1))
    assert outcome.phase == "ready", outcome.sections
    assert ops.read("/etc/hostname") == "c1-w1\n"
    assert _lines(ops, "passwd", "alice") == _lines(ops, "group", "alice") == 1
    assert ops.read("/home/alice/.ssh/authorized_keys") == "ssh-ed25519 AAAA a\n"
    assert "TrustedUserCAKeys /etc/ssh/clusterplane_user_ca.pub" in (ops.read(sshd.DROP_IN) or "")
    secret = ops.path(secrets.secret_path("munge.key"))
    assert secret.read_text() == "k3y" and secret.stat().st_mode & 0o777 == 0o600
    before = {p: p.read_bytes() for p in ops.root.rglob("*") if p.is_file()}
    restarted = _node(host, runtime)  # a new agent process on the same state dir
    again = restarted.apply(_assignment(1))
    assert again.phase == "ready"
    assert again.sections["users"].details["changed"] == []
    assert {p: p.read_bytes() for p in ops.root.rglob("*") if p.is_file()} == before
    assert runtime.converged == [{"role": "worker"}, {"role": "worker"}]


def test_a_released_host_is_returned_clean(host):
    runtime = RecordingRuntime()
    ops, state = host
    node = _node(host, runtime)
    node.apply(_assignment(1))
    outcome = node.apply(Assignment(generation=2))
    assert outcome.phase == "idle", outcome.sections
    assert _lines(ops, "passwd", "alice") == _lines(ops, "shadow", "alice") == 0
    assert not ops.path("/home/alice").exists()
    assert not ops.path(secrets.DIRECTORY).exists()
    assert ops.read(sshd.DROP_IN) is None and ops.read(sshd.CA_FILE) is None
    assert ops.read("/etc/hostname") == "gpu-1\n"
    assert runtime.torn_down == 1 and not (state / "runtimes" / "slurm" / "running").exists()
    assert _lines(ops, "passwd", "root") == 1  # what the agent did not create stays


def test_a_regular_account_the_host_already_had_is_used_as_it_is_and_never_removed(host):
    ops, _ = host
    theirs = ["alice", "x", "1500", "1500", "", "/home/alice", "/bin/sh"]
    ops.put_entry("passwd", theirs)
    outcome = _node(host).apply(_assignment(1, runtimes={}))
    assert outcome.phase == "ready", outcome.sections
    assert outcome.sections["users"].details["existing"] == ["alice"]
    assert [r for r in ops.entries("passwd") if r[0] == "alice"] == [theirs]  # unchanged
    assert _lines(ops, "shadow", "alice") == _lines(ops, "group", "alice") == 0
    assert ops.path("/home/alice").stat().st_uid == 1500  # its missing home, its own uid
    _node(host).apply(Assignment(generation=2))
    assert [r for r in ops.entries("passwd") if r[0] == "alice"] == [theirs]  # never ours


@pytest.mark.parametrize(
    ("entry", "database", "why"),
    [
        (["alice", "x", "2", "2", "", "/bin", "/usr/sbin/nologin"], "passwd", "system account"),
        (["mallory", "x", "2001", "2001", "", "/home/m", "/bin/sh"], "passwd", "belongs to"),
        (["staff", "x", "2001", ""], "group", "belongs to group 'staff'"),
        (["alice", "x", "50", ""], "group", "group 'alice' already exists"),
    ],
)
def test_an_account_clashing_with_the_hosts_own_fails_its_section_and_touches_nothing(
    host, entry: list[str], database: str, why: str
):
    ops, _ = host
    ops.put_entry(database, entry)
    before = {db: ops.entries(db) for db in ("passwd", "group", "shadow")}
    outcome = _node(host).apply(_assignment(1, runtimes={}))
    assert outcome.phase == "failed"
    assert why in outcome.sections["users"].message
    assert {db: ops.entries(db) for db in ("passwd", "group", "shadow")} == before


def test_an_assignment_for_another_cluster_first_cleans_the_old_one(host):
    ops, _ = host
    node = _node(host)
    node.apply(_assignment(1, runtimes={}))
    moved = _assignment(
        2, cluster_id="c-2", users=[{"name": "bob", "uid": 3001}], secrets={}, runtimes={}
    )
    assert node.apply(moved).phase == "ready"
    assert _lines(ops, "passwd", "alice") == 0 and _lines(ops, "passwd", "bob") == 1
    assert not ops.path(secrets.secret_path("munge.key")).exists()


def test_a_section_without_a_runtime_fails_only_itself(host):
    outcome = _node(host).apply(_assignment(1, runtimes={"kubernetes": {}}))
    assert outcome.phase == "failed"
    assert outcome.sections["runtime:kubernetes"].ok is False
    assert outcome.sections["users"].ok and outcome.sections["secrets"].ok


def test_a_failing_runtime_is_reported_with_its_message(host):
    outcome = _node(host, RecordingRuntime()).apply(
        _assignment(1, runtimes={"slurm": {"fail": "slurmd did not start"}})
    )
    assert outcome.phase == "failed"
    assert outcome.sections["runtime:slurm"].message == "slurmd did not start"


def test_mounts_need_the_shared_filesystem(host):
    outcome = _node(host).apply(
        _assignment(1, runtimes={}, mounts=[{"volume_id": "v", "source": "v", "target": "/data"}])
    )
    assert outcome.sections["mounts"].ok is False
    assert "not mounted" in outcome.sections["mounts"].message

"""A real Slurm 22.05 cluster on three namespaced hosts, run by the node runtime.

The controller and two workers (8 fake GPUs each) are hosts in their own network, UTS and
mount namespaces on a private loopback bridge (tests/support/hosts.py); the runtime runs
in this process and enters each host for its commands. The tests share one cluster and
run in file order: jobs and the prolog, a job that keeps running while a third worker
joins, drains, a cut network link, removal of a node, and a teardown that leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from clusterplane.agent.slurm.runtime import NodeBusy, NotOurDrain, SlurmRuntimeError
from clusterplane.providers.slurm import SlurmPartition, SlurmStartupScripts
from tests.support.hosts import Host, HostNetwork
from tests.support.slurm import SLURM_BINARIES, SlurmTestCluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root (namespaces, mknod)"),
    pytest.mark.skipif(
        shutil.which("unshare") is None or shutil.which("nsenter") is None,
        reason="test hosts need util-linux unshare and nsenter",
    ),
]

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = 30.0,
    details: Callable[[], str] = str,
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} {details()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmTestCluster]:
    missing = [binary for binary in SLURM_BINARIES if not Path(binary).exists()]
    if missing:
        pytest.fail(f"Slurm is not installed ({missing}): run scripts/ensure-slurm.sh")
    if subprocess.run(["unshare", "--uts", "true"], check=False).returncode:
        pytest.skip("this machine does not allow new namespaces (unshare failed)")
    user = f"cpslurm{os.getpid()}"  # the cluster's user, on every host (one /etc/passwd)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", user], check=True)
    try:
        with HostNetwork() as network:
            yield from _cluster_on(network, user)
    finally:
        subprocess.run(["userdel", user], check=False)  # after the hosts: no process of it left


def _cluster_on(network: HostNetwork, user: str) -> Iterator[SlurmTestCluster]:
    evidence = f"{network.host_root}/evidence"
    scripts = SlurmStartupScripts(
        worker_prolog=f'echo "$SLURM_JOB_ID $(hostname)" >> {evidence}/prolog.log\n',
        nodeset_init_script=f"mkdir -p {evidence} && hostname > {evidence}/init.log\n",
        login_init_script=f"mkdir -p {evidence} && hostname > {evidence}/login.log\n",
    )
    # Larger than this machine's /dev/shm, so workers get their own (in their namespace).
    shm = os.statvfs("/dev/shm")
    cluster = SlurmTestCluster(
        network,
        scripts=scripts,
        slurmd_timeout_s=10,
        shm_size_gib=shm.f_blocks * shm.f_frsize // 2**30 + 2,
        user=user,
    )
    try:
        yield cluster
    finally:
        for name in [*cluster.workers, *cluster.logins, cluster.controller.name]:
            with contextlib.suppress(SlurmRuntimeError):
                cluster.runtimes[name].teardown()


def idle_nodes(cluster: SlurmTestCluster, count: int) -> Callable[[], bool]:
    def probe() -> bool:
        view = cluster.control.node_view()
        return len(view) == count and all(node.summary == "idle" for node in view.values())

    return probe


def converging(
    cluster: SlurmTestCluster, hosts: tuple[Host, ...], done: Callable[[], bool]
) -> Callable[[], bool]:
    """`done`, while the hosts are converged again every few seconds as their agents do
    (a slurmd that gave up on a slow controller is started again)."""
    last = [time.monotonic()]

    def probe() -> bool:
        if done():
            return True
        if time.monotonic() - last[0] > 3:
            last[0] = time.monotonic()
            for host in hosts:
                cluster.converge(host)
        return False

    return probe


def test_a_controller_and_two_workers_converge_and_register_their_gpus(
    cluster: SlurmTestCluster,
) -> None:
    w1, w2 = cluster.add_worker("w1"), cluster.add_worker("w2")
    early = cluster.converge(w1)
    assert (early["ok"], early["phase"]) == (True, "waiting"), early
    assert f"cannot reach slurmctld at {cluster.controller.address}:6817" in early["message"]
    for host in (cluster.controller, w1, w2):
        report = cluster.converge(host)
        assert report["ok"], report
    wait_for(converging(cluster, (w1, w2), idle_nodes(cluster, 2)), "two idle workers", 60)
    view = cluster.control.node_view()
    assert {name: (node.gres, node.address) for name, node in view.items()} == {
        "w1": ("gpu:8", w1.address),
        "w2": ("gpu:8", w2.address),
    }


def test_converging_again_changes_nothing_and_restarts_a_daemon_that_died(
    cluster: SlurmTestCluster,
) -> None:
    w2 = cluster.workers["w2"]
    for host in (cluster.controller, *cluster.workers.values(), *cluster.logins.values()):
        report = cluster.converge(host)
        views = {k: report.pop(k) for k in ("nodes", "node_conditions", "removed") if k in report}
        assert report == {"ok": True, "phase": "ready", "message": "", "messages": []}
        assert bool(views) == (host is cluster.controller)  # Slurm's view, from slurmctld
    conditions = cluster.converge(cluster.controller)["node_conditions"]
    assert {name for name, c in conditions.items() if c["ready"]} >= {"w1", "w2"}
    slurmd_pid = int(w2.path(f"{cluster.spec.state_dir}/run/slurmd.pid").read_text())
    kill_and_wait(slurmd_pid)

    report = cluster.converge(w2)

    assert report["messages"] == ["slurmd started"]
    assert int(w2.path(f"{cluster.spec.state_dir}/run/slurmd.pid").read_text()) != slurmd_pid
    wait_for(idle_nodes(cluster, 2), "w2 back after its slurmd restarted")

    # Killed before it saved w2's new registration, slurmctld forgets dynamic nodes; the
    # workers' runtimes notice and register again.
    ctld = cluster.controller.path(f"{cluster.spec.state_dir}/run/slurmctld.pid")
    kill_and_wait(int(ctld.read_text()))
    assert cluster.converge(cluster.controller)["messages"] == ["slurmctld started"]
    for host in cluster.workers.values():
        assert cluster.converge(host)["ok"]
    wait_for(
        idle_nodes(cluster, 2),
        "both dynamic nodes back after slurmctld restarted",
        details=lambda: str(cluster.control.node_view()),
    )


def kill_and_wait(pid: int) -> None:
    """SIGKILL `pid` and wait until it is gone (a zombie counts: PID 1 reaps lazily)."""
    os.kill(pid, 9)

    def gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_for(gone, f"process {pid} to die")


def test_a_two_node_job_with_eight_gpus_each_runs_on_both_workers(
    cluster: SlurmTestCluster,
) -> None:
    result = cluster.on_controller(["srun", "-N2", "--gres=gpu:8", "hostname"])

    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == ["w1", "w2"]


def test_a_login_host_runs_the_client_tools_and_its_init_script(
    cluster: SlurmTestCluster,
) -> None:
    login = cluster.add_login("login")
    report = cluster.converge(login)
    assert report["ok"], report
    assert report["messages"][:2] == ["munged started", "login-init.sh ran"]

    result = login.run(["timeout", "10", "sinfo", "-h", "-N", "-o", "%N %T"], env=cluster.env)

    assert result.stdout.split() == ["w1", "idle", "w2", "idle"]
    assert login.path(f"{cluster.root}/evidence/login.log").read_text().split() == ["login"]


def test_workers_get_a_dev_shm_of_the_clusters_size_inside_their_host_only(
    cluster: SlurmTestCluster,
) -> None:
    for host in cluster.workers.values():
        assert shm_size(host) == cluster.spec.shm_size_gib
    assert shm_size(None) < cluster.spec.shm_size_gib


def shm_size(host: Host | None) -> int:
    """The size of /dev/shm in GiB as `host` (or this machine, for None) sees it."""
    argv = ["df", "--output=size", "-B1G", "/dev/shm"]
    answer = subprocess.run(host.command(argv) if host else argv, capture_output=True, text=True)
    return int(answer.stdout.split()[-1])


def test_the_worker_prolog_and_nodeset_init_ran_on_both_workers(
    cluster: SlurmTestCluster,
) -> None:
    for name, host in cluster.workers.items():
        evidence = host.path(f"{cluster.root}/evidence")
        assert (evidence / "init.log").read_text().split() == [name]
        lines = (evidence / "prolog.log").read_text().splitlines()
        assert lines and all(line.split()[1] == name for line in lines)


def job_state(cluster: SlurmTestCluster, job_id: str) -> str:
    # Not `squeue --json --jobs ID`: Slurm 22.05 ignores the filter with --json.
    shown = cluster.on_controller(["scontrol", "show", "job", job_id])
    return shown.stdout.split("JobState=")[1].split()[0] if "JobState=" in shown.stdout else ""


def test_a_batch_job_keeps_running_while_a_third_worker_joins_and_then_completes(
    cluster: SlurmTestCluster,
) -> None:
    user = cluster.user
    for host in cluster.workers.values():
        host.path(f"{cluster.root}/out").mkdir(mode=0o1777, exist_ok=True)
        host.path(f"{cluster.root}/out").chmod(0o1777)
    script = "sleep 6; echo $(id -un)@$(hostname) gpus=$CUDA_VISIBLE_DEVICES"
    submitted = cluster.on_controller(
        ["sbatch", "--parsable", "-N1", "-w", "w1", "--gres=gpu:2",
         "-o", f"{cluster.root}/out/%j.out", "--wrap", script],
        user=user,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    wait_for(
        lambda: job_state(cluster, job_id) == "RUNNING",
        "the batch job to run",
        details=lambda: cluster.on_controller(["scontrol", "show", "job", job_id]).stdout,
    )

    w3 = cluster.add_worker("w3")
    assert cluster.converge(cluster.controller)["messages"] == []  # same devices: no change
    assert cluster.converge(w3)["ok"]
    wait_for(idle_nodes_including(cluster, "w3"), "w3 to join")
    assert job_state(cluster, job_id) == "RUNNING"
    sinfo = cluster.on_controller(["sinfo", "-h", "-N", "-o", "%N"]).stdout.split()
    assert sorted(sinfo) == ["w1", "w2", "w3"]

    debug = SlurmPartition("debug", max_time="10")
    cluster.spec = replace(cluster.spec, partitions=(*cluster.spec.partitions, debug))
    assert cluster.converge(cluster.controller)["messages"] == [
        "configuration applied (slurmctld restarted; jobs keep running)",
        "wrote etc/slurm.conf",
    ]
    partitions = cluster.on_controller(["sinfo", "-h", "-o", "%P"]).stdout.split()
    assert partitions == ["gpu*", "debug"]
    w1 = cluster.workers["w1"]  # runs the job; its slurmd fetches the new configuration
    assert cluster.converge(w1)["messages"] == ["slurmd started"]
    cached = w1.path(f"{cluster.spec.state_dir}/spool/conf-cache/slurm.conf").read_text()
    assert "PartitionName=debug" in cached
    assert job_state(cluster, job_id) == "RUNNING"

    wait_for(lambda: job_state(cluster, job_id) == "COMPLETED", "the batch job to complete")
    output = cluster.workers["w1"].path(f"{cluster.root}/out/{job_id}.out").read_text()
    assert output.strip() == f"{user}@w1 gpus=0,1"


def idle_nodes_including(cluster: SlurmTestCluster, name: str) -> Callable[[], bool]:
    def probe() -> bool:
        node = cluster.control.node_view().get(name)
        return node is not None and node.summary == "idle"

    return probe


def test_clusterplane_drains_and_undrains_only_with_its_own_reason(
    cluster: SlurmTestCluster,
) -> None:
    control = cluster.control
    with pytest.raises(SlurmRuntimeError, match="clusterplane:"):
        control.drain("w1", "maintenance")

    control.drain("w1", "clusterplane: repair r-1")

    assert control.is_drained("w1")
    assert control.node("w1").summary == "drained"
    assert control.node("w1").reason == "clusterplane: repair r-1"
    assert control.undrain("w1") is True
    assert not control.is_drained("w1")
    assert control.undrain("w1") is False


def test_a_node_drained_by_someone_else_stays_drained(cluster: SlurmTestCluster) -> None:
    control = cluster.control
    control.slurm(["scontrol", "update", "nodename=w2", "state=drain", "reason=admin: disk"])
    try:
        with pytest.raises(NotOurDrain, match="admin: disk"):
            control.undrain("w2")
        with pytest.raises(NotOurDrain):
            control.drain("w2", "clusterplane: repair r-2")
        assert control.node("w2").reason == "admin: disk"
        assert control.is_drained("w2")
    finally:
        control.slurm(["scontrol", "update", "nodename=w2", "state=resume"])


def test_a_worker_whose_link_is_cut_becomes_not_responding(cluster: SlurmTestCluster) -> None:
    w2 = cluster.workers["w2"]
    # Slurm marks a resumed node not responding until its next ping answers.
    wait_for(
        idle_nodes(cluster, 3),
        "every worker idle and responding",
        details=lambda: str(cluster.control.node_view()),
    )
    started = time.monotonic()
    w2.cut_link()
    try:
        wait_for(lambda: cluster.control.node("w2").not_responding, "w2 not responding", timeout=40)
        took = time.monotonic() - started
        assert cluster.control.node("w2").summary == "not_responding"
        assert cluster.control.node("w1").summary == "idle"
    finally:
        w2.restore_link()
    print(f"w2 was not responding {took:.1f} s after its link was cut (SlurmdTimeout=10)")


def test_a_drained_idle_worker_is_removed_and_a_busy_one_is_not(
    cluster: SlurmTestCluster,
) -> None:
    control = cluster.control
    with pytest.raises(NodeBusy):
        control.remove_node("w3")  # not drained
    control.drain("w3", "clusterplane: scale down")
    cluster.runtimes["w3"].teardown()

    control.remove_node("w3")

    assert "w3" not in control.node_view()
    assert cluster.workers["w3"].processes() == []


def test_teardown_leaves_no_process_file_key_or_socket_even_with_a_job_running(
    cluster: SlurmTestCluster,
) -> None:
    user = cluster.user
    submitted = cluster.on_controller(
        ["sbatch", "--parsable", "-w", "w1", "-o", "/dev/null", "--wrap", "sleep 300"], user=user
    )
    job_id = submitted.stdout.strip()
    wait_for(lambda: job_state(cluster, job_id) == "RUNNING", "a job to leave running")
    hosts = [cluster.controller, *cluster.workers.values(), *cluster.logins.values()]
    for host in hosts:
        cluster.runtimes[host.name].teardown()

    for host in hosts:
        assert host.processes() == []
        assert not host.path(cluster.spec.state_dir).exists()
        assert not host.path("/run/munge/munge.socket.2").exists()
        assert not host.path("/run/slurm/conf").is_symlink()
        assert not host.path(f"{cluster.root}/agent/slurm.json").exists()
        assert shm_size(host) == shm_size(None)  # the one it mounted is gone
    assert cluster.control.teardown()["messages"] == ["nothing to tear down"]

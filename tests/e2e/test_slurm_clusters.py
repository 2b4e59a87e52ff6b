"""SLURM clusters for real: the official SDK creates one on enrolled agent hosts, and its
user runs jobs on Debian's Slurm 22.05 through `clusterplane ssh`.

Five machines of an `AgentFleet` (tests/support/agent_fleet.py: network, UTS and mount
namespaces on a private loopback bridge, each with its own /etc, sshd and agent process):
one control-plane host without GPUs, which becomes the cluster's slurmctld, and four with
8 fake GPUs each. The region has no fleet-file hosts. The tests share one cluster and run
in file order: create (acceptance tests run through the agents' checks) and srun; a batch
job that keeps running while the cluster scales to 24 GPUs and while the control plane
restarts; a cut network link that leads to the node's drain and replacement; homes on
the cluster's shared volume and an XID in a host's kernel log that leads to a repair; a
delete that leaves nothing on the hosts (the fleet's close fails on any leftover).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import together

from tests.support.agent_fleet import AgentFleet, AgentHost
from tests.support.agents import DRIVER_VERSION, REGION, wait_for
from tests.support.server import BIN
from tests.support.slurm import SLURM_BINARIES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="agent hosts need root (namespaces, mknod)"),
    pytest.mark.skipif(
        shutil.which("unshare") is None or not Path("/usr/sbin/sshd").exists(),
        reason="agent hosts need util-linux and OpenSSH's sshd",
    ),
]

FLEET = f"""
profiles:
  h100: {{gpu_type: H100_SXM, num_gpus: 8, num_cpu_cores: 64, memory_gib: 512}}
regions:
  - name: {REGION}
    network: 10.230.0.0/24
    storage_tib: 10
    control_plane: {{nodes_per_cluster: 1, num_cpu_cores: 4, memory_gib: 8, placement: hosts}}
    driver_versions:
      - {{id: {DRIVER_VERSION}, cuda_version: "12.8", nvidia_driver_version: "570",
          os: ubuntu-22.04}}
    fabrics: []
"""
LOGIN = "ubuntu"
WORKERS = ("w1", "w2", "w3", "w4")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFleet]:
    missing = [binary for binary in SLURM_BINARIES if not Path(binary).exists()]
    if missing:
        pytest.skip(f"Slurm is not installed (`make slurm`): {missing}")
    workdir = tmp_path_factory.mktemp("slurm-clusters")
    with AgentFleet(
        workdir,
        fleet_yaml=FLEET,
        silence_seconds=3.0,
        agent_config={"converge_seconds": 1.0, "num_cpu_cores": 4, "memory_gib": 8},
        server_toml='[slurm]\nstate_dir = "{host_root}/slurm"\nslurmd_timeout_seconds = 5\n',
    ) as machines:
        machines.add_host("ctl", gpus=0, sshd=False, wait=False)
        for name in WORKERS:
            machines.add_host(name, wait=False)
        for name in ("ctl", *WORKERS):
            machines.wait_enrolled(name)
        yield machines


@pytest.fixture(scope="module")
def client(fleet: AgentFleet) -> Iterator[together.Together]:
    with together.Together(base_url=fleet.server.base_url, api_key=fleet.server.api_key) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def cluster_id(fleet: AgentFleet, client: together.Together) -> str:
    prolog = f'echo "$SLURM_JOB_ID" >> "{fleet.shared_fs}/prolog-$(hostname)"\n'
    created = client.clusters.create(
        cluster_name="slurm-e2e",
        billing_type="ON_DEMAND",
        cluster_type="SLURM",
        gpu_type="H100_SXM",
        num_gpus=16,
        region=REGION,
        nvidia_version_id=DRIVER_VERSION,
        slurm_shm_size_gib=1,
        cluster_config={
            "load_balancer": "NONE",
            "ssh_ca_enabled": True,
            "slurm_startup_scripts": {"worker_prolog": prolog},
        },
        shared_volume={"volume_name": "home", "size_tib": 1, "region": REGION},
    )
    ready(client, created.cluster_id, workers=2)
    return str(created.cluster_id)


def ready(client: together.Together, cluster_id: str, *, workers: int, timeout: float = 90) -> Any:
    seen: list[str] = []

    def probe() -> Any:
        cluster = client.clusters.retrieve(cluster_id)
        running = [n for n in cluster.gpu_worker_nodes if n.status == "Running"]
        nodes = [(n.host_name, n.status) for n in cluster.gpu_worker_nodes]
        seen[:] = [f"{cluster.status} {nodes}"]
        return cluster if cluster.status == "Ready" and len(running) == workers else None

    try:
        return wait_for(probe, f"cluster {cluster_id} Ready with {workers} workers", timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen}") from None


def clusterplane_ssh(fleet: AgentFleet, cluster_id: str, command: list[str]) -> str:
    """`clusterplane ssh CLUSTER -- COMMAND` as the cluster's user, from this machine."""
    env = {
        **os.environ,
        "TOGETHER_BASE_URL": fleet.server.base_url,
        "TOGETHER_API_KEY": fleet.server.api_key,
    }
    argv = [
        str(BIN / "clusterplane"), "ssh", cluster_id, "-l", LOGIN,
        "--cache-dir", str(fleet.network.workdir / "ssh-cache"),
        "-o", f"UserKnownHostsFile={fleet.known_hosts}",
        "--", *command,
    ]  # fmt: skip
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        ctl = fleet.hosts["ctl"]
        [conf] = ctl.path(f"{fleet.network.host_root}/slurm").glob("*/etc/slurm.conf")
        inside = f"{fleet.network.host_root}/slurm/{conf.parent.parent.name}/etc/slurm.conf"
        log = conf.parent.parent / "log" / "slurmctld.log"
        for cmd in (["sinfo"], ["squeue"]):
            print(ctl.run(cmd, env={"SLURM_CONF": inside}, check=False).stdout)
        print(log.read_text()[-3000:])
        raise
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout


def worker_hosts(fleet: AgentFleet, client: together.Together, cluster_id: str) -> list[str]:
    cluster = client.clusters.retrieve(cluster_id)
    return sorted(n.host_name for n in cluster.gpu_worker_nodes if n.status == "Running")


def slurm_names(client: together.Together, cluster_id: str) -> set[str]:
    cluster = client.clusters.retrieve(cluster_id)
    return {n.slurm_worker_hostname for n in cluster.gpu_worker_nodes if n.status == "Running"}


def sinfo(fleet: AgentFleet) -> dict[str, str]:
    """Slurm's own view on the controller host: node name -> state."""
    ctl = fleet.hosts["ctl"]
    [conf] = ctl.path(f"{fleet.network.host_root}/slurm").glob("*/etc/slurm.conf")
    inside = f"{fleet.network.host_root}/slurm/{conf.parent.parent.name}/etc/slurm.conf"
    answer = ctl.run(["sinfo", "-h", "-N", "-o", "%N %t"], env={"SLURM_CONF": inside})
    return dict(line.split() for line in answer.stdout.splitlines())


def test_a_16_gpu_slurm_cluster_runs_srun_on_both_workers_over_clusterplane_ssh(
    fleet: AgentFleet, client: together.Together, cluster_id: str
):
    names = slurm_names(client, cluster_id)
    assert len(names) == 2 and set(sinfo(fleet)) == names
    output = clusterplane_ssh(fleet, cluster_id, ["srun", "-N2", "--gres=gpu:8", "hostname"])
    assert sorted(output.split()) == sorted(names)
    written = {p.name.removeprefix("prolog-") for p in fleet.shared_fs.glob("prolog-*")}
    assert written == names  # the cluster's worker_prolog ran on both workers


def test_a_batch_job_keeps_running_while_the_cluster_scales_to_24_gpus_and_the_server_restarts(
    fleet: AgentFleet, client: together.Together, cluster_id: str
):
    submitted = clusterplane_ssh(
        fleet, cluster_id, ["sbatch", "-N2", "--parsable", "--wrap", "'sleep 20; echo done'"]
    )
    job = submitted.strip().split(";")[0]
    client.clusters.update(cluster_id, num_gpus=24)
    ready(client, cluster_id, workers=3)
    assert len(sinfo(fleet)) == 3
    fleet.server.stop()
    fleet.server.start()
    state = clusterplane_ssh(fleet, cluster_id, ["squeue", "-h", "-j", job, "-o", "%T"])
    assert state.strip() == "RUNNING"

    def job_state() -> str:
        shown = clusterplane_ssh(fleet, cluster_id, ["scontrol", "-o", "show", "job", job])
        return shown.split("JobState=", 1)[1].split()[0]

    wait_for(lambda: job_state() == "COMPLETED", f"job {job} to complete", timeout=60)


def test_a_cut_link_makes_the_cluster_degraded_and_the_node_is_drained_and_replaced(
    fleet: AgentFleet, client: together.Together, cluster_id: str
):
    before = set(worker_hosts(fleet, client, cluster_id))
    victim: AgentHost = fleet.hosts[sorted(before)[0]]
    victim.host.cut_link()
    wait_for(
        lambda: client.clusters.retrieve(cluster_id).status == "Degraded",
        "the cluster Degraded (agent silent and slurmctld lost the node)",
        timeout=30,
    )
    [node] = [
        n for n in client.clusters.retrieve(cluster_id).gpu_worker_nodes
        if n.host_name == victim.name
    ]  # fmt: skip

    def proposed() -> Any:
        page = client.clusters.remediations.list(
            node.instance_id, cluster_id=cluster_id, state=["PENDING_APPROVAL"]
        )
        return page.remediations[0] if page.remediations else None

    repair = wait_for(proposed, "a proposed repair of the silent node", timeout=30)
    assert repair.mode == "REMEDIATION_MODE_HOST_AWARE"
    client.clusters.remediations.approve(
        repair.id, cluster_id=cluster_id, instance_id=node.instance_id
    )
    wait_for(
        lambda: sinfo(fleet).get(node.slurm_worker_hostname, "gone").startswith(("drain", "gone")),
        "the silent node drained in Slurm (or deleted once drained)",
        timeout=30,
    )
    ready(client, cluster_id, workers=3, timeout=90)
    after = set(worker_hosts(fleet, client, cluster_id))
    assert victim.name not in after and len(after - before) == 1
    victim.host.restore_link()  # its agent comes back, returns the host clean


def test_the_users_home_is_on_the_shared_volume_and_an_xid_in_the_kernel_log_is_repaired(
    fleet: AgentFleet, client: together.Together, cluster_id: str
):
    clusterplane_ssh(fleet, cluster_id, ["sh", "-c", "'echo kept > ~/kept'"])
    [volume] = list(fleet.shared_fs.glob("*/home/ubuntu/kept"))
    assert volume.read_text() == "kept\n"  # on the operator's shared filesystem
    with fleet.admin() as http:  # once w1 is back and clean, the operator returns it

        def quarantined() -> list[str]:
            hosts = http.get("/admin/v1/fleet/hosts").json()["hosts"]
            return [h["name"] for h in hosts if h["state"] == "quarantined"]

        assert wait_for(quarantined, "w1 released into quarantine", timeout=30) == ["w1"]
        assert http.post("/admin/v1/fleet/hosts/w1/online").status_code == 200
    cluster = client.clusters.retrieve(cluster_id)
    node = next(n for n in cluster.gpu_worker_nodes if n.status == "Running")
    fleet.hosts[node.host_name].kernel_xid(gpu=2, code=79)  # fallen off the bus

    def proposed() -> Any:
        page = client.clusters.remediations.list(
            node.instance_id, cluster_id=cluster_id, state=["PENDING_APPROVAL"]
        )
        return page.remediations[0] if page.remediations else None

    repair = wait_for(proposed, "a repair proposed for the XID", timeout=30)
    assert "Xid 79" in repair.reason or "FallenOffBus" in repair.reason
    client.clusters.remediations.approve(
        repair.id, cluster_id=cluster_id, instance_id=node.instance_id
    )
    ready(client, cluster_id, workers=3)  # on w1: back from quarantine, returned clean
    assert node.host_name not in worker_hosts(fleet, client, cluster_id)


def test_scaling_back_to_16_gpus_drains_one_node_out_of_slurm_and_the_cluster_still_runs_jobs(
    fleet: AgentFleet, client: together.Together, cluster_id: str
):
    before = slurm_names(client, cluster_id)
    client.clusters.update(cluster_id, num_gpus=16)
    ready(client, cluster_id, workers=2)
    staying = slurm_names(client, cluster_id)
    assert len(before - staying) == 1
    views: list[dict[str, str]] = []

    def deleted() -> bool:
        views[:] = [sinfo(fleet)]
        return set(views[0]) == staying

    try:
        wait_for(deleted, "the leaving node deleted from Slurm", timeout=60)
    except AssertionError as exc:
        ctl = fleet.hosts["ctl"]
        [conf] = ctl.path(f"{fleet.network.host_root}/slurm").glob("*/etc/slurm.conf")
        log = (conf.parent.parent / "log" / "slurmctld.log").read_text()
        leaving = sorted(before - staying)[0]
        lines = [line for line in log.splitlines() if leaving in line or "delete" in line.lower()]
        raise AssertionError(f"{exc}; Slurm's view: {views}; log: {lines[-40:]}") from None
    output = clusterplane_ssh(fleet, cluster_id, ["srun", "-N2", "hostname"])
    assert sorted(output.split()) == sorted(staying)


def test_deleting_the_cluster_leaves_no_daemon_user_mount_or_key_on_its_hosts(
    fleet: AgentFleet, client: together.Together, cluster_id: str
):
    client.clusters.delete(cluster_id)

    def gone() -> bool:
        with fleet.admin() as http:
            response = http.get(f"/v1/compute/clusters/{cluster_id}")
        return response.status_code == 404

    wait_for(gone, "the cluster deleted", timeout=60)
    for machine in fleet.hosts.values():
        assert machine.entries("passwd", LOGIN) == 0
        assert machine.agent_mounts() == []
        assert not list(machine.path(f"{fleet.network.host_root}/slurm").glob("*"))
    started = time.monotonic()
    fleet.close(verify=True)  # raises on any process left in a host, or anything else
    assert time.monotonic() - started < 30

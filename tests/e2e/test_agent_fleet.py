"""The agent fleet harness: real agents on namespaced machines enroll with a real server,
and an assignment reaches a real sshd on the machine and nothing beyond it.

Two machines on a private loopback bridge, one with 8 fake GPUs and one with none, run
`clusterplane agent` in their own network, UTS and mount namespaces, with their own /etc,
/var and /home (tests/support/agent_fleet.py). A user certificate from the assignment's
SSH CA logs in over OpenSSH while the host is assigned, and is refused once it is released.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agent_fleet import AgentFleet, AgentHost
from tests.support.agents import REGION
from tests.support.hosts import pids_in_namespace
from tests.support.sshd import SSHD, UserCa

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="agent machines need root (namespaces, mounts)"),
    pytest.mark.skipif(
        shutil.which("nsenter") is None or not SSHD.exists(),
        reason="agent machines need util-linux nsenter and OpenSSH's sshd",
    ),
]

LOGIN = "ubuntu"
DROP_IN = "/etc/ssh/sshd_config.d/50-clusterplane.conf"  # the agent's TrustedUserCAKeys
ASSIGNMENT = {
    "cluster_id": "c-harness",
    "node": {"node_name": "w1", "instance_id": "i-w1", "role": "gpu_worker", "hostname": "c1-w1"},
    "users": [{"name": LOGIN, "uid": 2000}],
    "mounts": [{"volume_id": "vol-1", "source": "volumes/vol-1", "target": "/home"}],
}


def _machine_etc() -> list[object]:
    """What the machine's own /etc says about accounts, sshd and its name."""
    files = [Path("/etc", name).read_text() for name in ("passwd", "group", "hostname")]
    return [*files, sorted(os.listdir("/etc/ssh")), sorted(os.listdir("/etc/ssh/sshd_config.d"))]


@pytest.fixture(scope="module")
def machine_etc() -> list[object]:
    return _machine_etc()


@pytest.fixture(scope="module")
def fleet(machine_etc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFleet]:
    with AgentFleet(tmp_path_factory.mktemp("agent-fleet")) as fleet:
        fleet.add_host("gpu-1", gpus=8, wait=False)
        fleet.add_host("ctl-1", gpus=0, wait=False)
        for name in fleet.hosts:
            fleet.wait_enrolled(name)
        yield fleet  # closed by the last test, or here


def _machine_users() -> list[str]:
    return [line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()]


def test_machines_enroll_with_join_tokens_and_report_their_gpus_and_bridge_addresses(fleet):
    with fleet.admin() as http:
        listed = http.get("/admin/v1/fleet/hosts", params={"region": REGION}).json()["hosts"]
        agents = {name: http.get(f"/admin/v1/agents/{name}").json() for name in fleet.hosts}

    hosts = {host["name"]: host for host in listed}
    assert sorted(hosts) == ["ctl-1", "gpu-1"]
    assert (hosts["gpu-1"]["num_gpus"], hosts["gpu-1"]["gpu_type"]) == (8, "H100_SXM")
    assert (hosts["ctl-1"]["num_gpus"], hosts["ctl-1"]["gpu_type"]) == (0, "none")
    assert {host["driver"] for host in listed} == {"agent"}
    for name, machine in fleet.hosts.items():
        inventory = agents[name]["inventory"]
        assert inventory["ip_address"] == machine.address
        assert machine.address.startswith(fleet.network.prefix + ".")
        assert [gpu["device_path"] for gpu in inventory["gpus"]] == machine.gpu_devices
    assert fleet.hosts["gpu-1"].gpu_devices == [
        f"{fleet.network.host_root}/dev/nvidia{index}" for index in range(8)
    ]


def _login(machine: AgentHost, identity: Path) -> subprocess.CompletedProcess[str]:
    return machine.ssh(LOGIN, identity, "hostname; id -un; echo written > ~/proof")


def test_an_assignment_lets_its_ca_s_certificates_log_in_until_the_host_is_released(
    fleet, tmp_path
):
    gpu, ctl = fleet.hosts["gpu-1"], fleet.hosts["ctl-1"]
    ca = UserCa(tmp_path / "ca")
    identity = ca.issue(LOGIN)
    before = _login(gpu, identity)
    assert before.returncode == 255 and "Permission denied" in before.stderr

    generation = fleet.publish(gpu.name, {**ASSIGNMENT, "ssh_user_ca_keys": [ca.public_key]})
    fleet.wait_applied(gpu.name, generation, "ready")
    assigned = _login(gpu, identity)
    assert assigned.returncode == 0, assigned.stderr + (gpu.sshd.log() if gpu.sshd else "")
    assert assigned.stdout.split() == ["c1-w1", LOGIN]
    volume = fleet.shared_fs / "volumes/vol-1"
    assert (volume / LOGIN / "proof").read_text() == "written\n"
    seen_from_ctl = ctl.run(["cat", f"{volume}/{LOGIN}/proof"]).stdout  # one path, every host
    assert seen_from_ctl == "written\n"
    assert gpu.entries("passwd", LOGIN) == 1 and gpu.agent_mounts() == ["/home"]
    assert ctl.entries("passwd", LOGIN) == 0 and LOGIN not in _machine_users()
    assert gpu.path(DROP_IN).exists() and not Path(DROP_IN).exists()

    fleet.wait_applied(gpu.name, fleet.publish(gpu.name, None), "idle")
    released = _login(gpu, identity)
    assert released.returncode == 255 and "Permission denied" in released.stderr
    assert gpu.entries("passwd", LOGIN) == 0 and gpu.agent_mounts() == []
    assert not gpu.path(DROP_IN).exists()
    assert gpu.hostname() == "gpu-1"
    assert LOGIN not in _machine_users()


def test_closing_the_fleet_leaves_no_process_namespace_mount_or_file(fleet, machine_etc):
    """Last in this file: it closes the module's fleet."""
    processes = [fleet.server.process]
    for machine in fleet.hosts.values():
        assert machine.sshd is not None
        processes += [machine.agent.process, machine.sshd.process]
        machine.path("/etc/marker").write_text("this host's own\n")
    namespaces = [(m.host.netns, m.host.mnt_inode) for m in fleet.hosts.values()]
    workdir = fleet.network.workdir

    fleet.close()

    assert all(process is not None and process.poll() is not None for process in processes)
    for netns, mnt_inode in namespaces:
        assert not Path(f"/run/netns/{netns}").exists()
        assert pids_in_namespace(mnt_inode, "mnt") == []
    assert not workdir.exists()
    assert not Path("/etc/marker").exists()
    assert _machine_etc() == machine_etc

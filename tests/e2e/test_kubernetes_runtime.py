"""A real Kubernetes v1.20 cluster on three namespaced hosts, run by the node runtime.

The control plane and two workers (8 fake GPUs each) are hosts in their own network, UTS
and mount namespaces on a private loopback bridge (tests/support/hosts.py); the runtime
runs in this process and enters each host for its commands, and serves each worker's
device plugin from here. The client is the Python `kubernetes` client with the kubeconfig
clusterplane hands out. The tests share one cluster and run in file order: nodes turn
Ready with their GPUs, GPU pods, the kubelet's environment and the hosts' routes, a
restarted kubelet, cordon and drain, node health, OIDC flags, and a teardown that leaves
nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client as kube_client
from kubernetes.client.rest import ApiException

from clusterplane.agent.kubernetes.host import KUBELET_SYSCTLS
from tests.support.hosts import HostNetwork
from tests.support.kubernetes import (
    BUSYBOX_IMAGE,
    KubernetesTestCluster,
    machine_to_ourselves,
    missing_pieces,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root (namespaces, mknod)"),
    pytest.mark.skipif(
        shutil.which("unshare") is None or shutil.which("nsenter") is None,
        reason="test hosts need util-linux unshare and nsenter",
    ),
]

T = TypeVar("T")
GPU = "nvidia.com/gpu"


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = 60.0,
    details: Callable[[], str] = str,
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} {details()}")
        time.sleep(0.3)


def kernel_sysctls() -> dict[str, str]:
    return {name: _sysctl(name) for name in KUBELET_SYSCTLS}


def _sysctl(name: str) -> str:
    return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubernetesTestCluster]:
    missing = missing_pieces()
    if missing:
        pytest.fail(f"Kubernetes is not installed ({missing}): run make kubernetes")
    if subprocess.run(["unshare", "--uts", "true"], check=False).returncode:
        pytest.skip("this machine does not allow new namespaces (unshare failed)")
    with machine_to_ourselves(), HostNetwork() as network:
        cluster = KubernetesTestCluster(network)
        cluster.sysctls_before = kernel_sysctls()
        try:
            yield cluster
        finally:
            for name in [*cluster.workers, "cp"]:
                with contextlib.suppress(Exception):
                    cluster.runtimes[name].teardown()


def converging(
    cluster: KubernetesTestCluster, done: Callable[[], T | None]
) -> Callable[[], T | None]:
    """`done`, while every host is converged again every few seconds as agents do."""
    last = [0.0]

    def probe() -> T | None:
        value = done()
        if value:
            return value
        if time.monotonic() - last[0] > 3:
            last[0] = time.monotonic()
            for host in (cluster.control, *cluster.workers.values()):
                cluster.converge(host)
        return None

    return probe


def ready_nodes(cluster: KubernetesTestCluster, count: int) -> Callable[[], list[Any] | None]:
    def probe() -> list[Any] | None:
        nodes = cluster.kube().list_node().items
        ready = [
            node
            for node in nodes
            if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
            and int((node.status.allocatable or {}).get(GPU, "0")) == 8
        ]
        return ready if len(ready) == count else None

    return probe


def gpu_pod(name: str, gpus: int, node: str | None = None) -> dict[str, Any]:
    script = "ls /dev | grep nvidia | sort; echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": BUSYBOX_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                "resources": {"limits": {GPU: str(gpus)}},
            }
        ],
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def pod_phase(kube: kube_client.CoreV1Api, name: str) -> str:
    return str(kube.read_namespaced_pod(name, "default").status.phase)


def test_the_control_plane_and_two_gpu_workers_converge_and_their_nodes_turn_ready(
    cluster: KubernetesTestCluster,
) -> None:
    started = time.monotonic()
    report = cluster.converge(cluster.control)
    assert (report["ok"], report["phase"]) == (True, "ready"), report
    assert report["messages"][:4] == [
        "issued the control plane's certificates",
        "etcd started",
        "kube-apiserver started",
        "kube-scheduler started",
    ]
    control_plane_s = time.monotonic() - started
    w1, w2 = cluster.add_worker("w1"), cluster.add_worker("w2")
    for host in (w1, w2):
        report = cluster.converge(host)
        assert report["ok"], report
        assert "kubelet started" in report["messages"]
    cluster.converge(cluster.control)  # routes to the workers' pods

    nodes = wait_for(converging(cluster, ready_nodes(cluster, 2)), "two Ready GPU nodes")

    print(f"control plane ready in {control_plane_s:.1f} s; nodes Ready "
          f"{time.monotonic() - started:.1f} s after the start")  # fmt: skip
    assert {node.metadata.name: node.status.allocatable[GPU] for node in nodes} == {
        "w1": "8",
        "w2": "8",
    }
    addresses = {n.metadata.name: n.status.addresses[0].address for n in nodes}
    assert addresses == {"w1": w1.address, "w2": w2.address}
    report = cluster.converge(cluster.control)
    assert report["node_conditions"] == {
        "w1": {"ready": True, "reason": ""},
        "w2": {"ready": True, "reason": ""},
    }
    assert report["nodes"]["w1"]["gpus"] == 8


def test_converging_again_changes_nothing(cluster: KubernetesTestCluster) -> None:
    for host in (cluster.control, *cluster.workers.values()):
        report = cluster.converge(host)
        assert (report["phase"], report["messages"]) == ("ready", []), report


def test_a_pod_asking_for_eight_gpus_runs_and_sees_its_eight_devices(
    cluster: KubernetesTestCluster,
) -> None:
    kube = cluster.kube()
    kube.create_namespaced_pod("default", gpu_pod("eight", 8))

    wait_for(lambda: pod_phase(kube, "eight") == "Succeeded", "the 8-GPU pod to finish",
             details=lambda: str(kube.read_namespaced_pod("eight", "default").status))  # fmt: skip

    log = kube.read_namespaced_pod_log("eight", "default").split()
    node = kube.read_namespaced_pod("eight", "default").spec.node_name
    assert log[:8] == [f"nvidia{i}" for i in range(8)]
    visible = log[8].removeprefix("NVIDIA_VISIBLE_DEVICES=").split(",")
    assert sorted(visible) == [f"GPU-{node}-{i}" for i in range(8)]


def test_a_pod_asking_for_nine_gpus_stays_pending_for_want_of_gpus(
    cluster: KubernetesTestCluster,
) -> None:
    kube = cluster.kube()
    kube.create_namespaced_pod("default", gpu_pod("nine", 9))

    def unschedulable() -> str | None:
        events = kube.list_namespaced_event(
            "default", field_selector="involvedObject.name=nine"
        ).items
        return next((e.message for e in events if e.reason == "FailedScheduling"), None)

    message = wait_for(unschedulable, "the 9-GPU pod to fail scheduling", timeout=30)
    assert "Insufficient nvidia.com/gpu" in message
    assert pod_phase(kube, "nine") == "Pending"
    kube.delete_namespaced_pod("nine", "default", grace_period_seconds=0)


def test_hosts_have_no_default_route_and_kubelets_no_cloud_metadata(
    cluster: KubernetesTestCluster,
) -> None:
    for host in (cluster.control, *cluster.workers.values()):
        assert host.run(["ip", "route", "show", "default"]).stdout.strip() == ""
        assert host.run(["ip", "route", "show", "table", "all", "default"]).stdout.strip() == ""
    for name, host in cluster.workers.items():
        kubelet = _pid_of(cluster, name, "kubelet")
        environment = Path(f"/proc/{kubelet}/environ").read_bytes().split(b"\0")
        assert b"AWS_EC2_METADATA_DISABLED=true" in environment, name
        assert Path(f"/proc/{kubelet}/comm").read_text().strip() == "kubelet"
        assert host.processes().count(kubelet) == 1


def _pid_of(cluster: KubernetesTestCluster, host: str, daemon: str) -> int:
    record = cluster.runtimes[host].host.state_dir / "kubernetes.json"
    return int(json.loads(record.read_text())["procs"][daemon]["pid"])


def kill_and_wait(pid: int) -> None:
    os.kill(pid, 9)

    def gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_for(gone, f"process {pid} to die", timeout=10)


def test_a_killed_kubelet_is_restarted_and_its_gpus_registered_again(
    cluster: KubernetesTestCluster,
) -> None:
    w2 = cluster.workers["w2"]
    kill_and_wait(_pid_of(cluster, "w2", "kubelet"))
    registrations = cluster.runtimes["w2"]._role.plugin.registrations  # type: ignore[union-attr]

    report = cluster.converge(w2)

    assert "kubelet started" in report["messages"], report
    plugin = cluster.runtimes["w2"]._role.plugin  # type: ignore[union-attr]
    wait_for(lambda: plugin.registrations > registrations, "the GPUs registered again")
    wait_for(converging(cluster, ready_nodes(cluster, 2)), "w2 Ready with its GPUs again")
    kube = cluster.kube()
    kube.create_namespaced_pod("default", gpu_pod("after-restart", 8, node="w2"))
    wait_for(lambda: pod_phase(kube, "after-restart") == "Succeeded", "a GPU pod on w2")


def test_a_hung_kubelet_is_reported_by_its_worker_and_its_node_not_ready(
    cluster: KubernetesTestCluster,
) -> None:
    kubelet = _pid_of(cluster, "w2", "kubelet")
    os.kill(kubelet, signal.SIGSTOP)
    try:

        def w2_down() -> dict[str, Any] | None:
            conditions = cluster.converge(cluster.control).get("node_conditions", {})
            return conditions if not conditions.get("w2", {}).get("ready", True) else None

        conditions = wait_for(w2_down, "w2 reported not ready", timeout=40)
        assert conditions["w1"] == {"ready": True, "reason": ""}
        assert conditions["w2"]["ready"] is False

        def w2_unhealthy() -> dict[str, Any] | None:
            health = cluster.converge(cluster.workers["w2"])["daemon_health"]
            return health if health["ok"] is False else None

        health = wait_for(w2_unhealthy, "w2's agent reporting its kubelet", timeout=30)
        assert health["name"] == "kubelet" and "health check" in health["message"]
        assert cluster.converge(cluster.workers["w1"])["daemon_health"]["ok"] is True
    finally:
        os.kill(kubelet, signal.SIGCONT)
    wait_for(converging(cluster, ready_nodes(cluster, 2)), "w2 Ready again")
    assert cluster.converge(cluster.workers["w2"])["daemon_health"]["ok"] is True
    assert _pid_of(cluster, "w2", "kubelet") == kubelet  # a hung kubelet is not restarted


def test_a_cordoned_node_is_drained_through_evictions_and_uncordoned_only_by_clusterplane(
    cluster: KubernetesTestCluster,
) -> None:
    kube = cluster.kube()
    sleeper = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper"},
        "spec": {
            "nodeName": "w1",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "600"],
                }
            ],
        },
    }
    kube.create_namespaced_pod("default", sleeper)
    wait_for(lambda: pod_phase(kube, "sleeper") == "Running", "the sleeper to run")
    cordon = {"w1": "clusterplane: scale down"}

    report = cluster.runtimes["cp"].converge({**cluster.section(cluster.control), "cordon": cordon})

    assert "cordoned w1" in report["messages"]
    assert report["nodes"]["w1"]["unschedulable"] is True
    assert report["nodes"]["w1"]["cordoned_by_clusterplane"] is True

    def drained() -> dict[str, Any] | None:
        section = {**cluster.section(cluster.control), "cordon": cordon}
        drain = cluster.runtimes["cp"].converge(section)["drains"]["w1"]
        return drain if drain["drained"] else None

    wait_for(drained, "w1 drained")
    with pytest.raises(ApiException):
        kube.read_namespaced_pod("sleeper", "default")
    report = cluster.converge(cluster.control)
    assert "uncordoned w1" in report["messages"]
    assert report["nodes"]["w1"]["unschedulable"] is False

    kube.patch_node("w2", {"spec": {"unschedulable": True}})  # an operator's own cordon
    report = cluster.converge(cluster.control)
    assert report["nodes"]["w2"]["unschedulable"] is True
    assert "uncordoned w2" not in report["messages"]
    kube.patch_node("w2", {"spec": {"unschedulable": False}})


def test_the_oidc_settings_reach_the_api_server(cluster: KubernetesTestCluster) -> None:
    issuer = f"https://{cluster.network.gateway}:9"  # nothing listens: the flags are the point
    cluster.oidc = {
        "issuer_url": issuer,
        "client_id": "clusterplane",
        "username_claim": "email",
        "username_prefix": "oidc:",
        "group_claim": "groups",
        "group_prefix": "oidc:",
    }
    report = cluster.converge(cluster.control)

    assert "kube-apiserver started" in report["messages"]
    assert report["phase"] == "ready"
    argv = Path(f"/proc/{_pid_of(cluster, 'cp', 'kube-apiserver')}/cmdline").read_bytes()
    flags = argv.decode().split("\0")
    assert f"--oidc-issuer-url={issuer}" in flags
    assert "--oidc-username-claim=email" in flags
    assert "--oidc-groups-prefix=oidc:" in flags
    assert [n.metadata.name for n in cluster.kube().list_node().items] == ["w1", "w2"]


def sleeper_pod(name: str, node: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sleep", "600"],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [container]},
    }


def test_a_disruption_budget_holds_a_drain_until_the_removal_is_forced(
    cluster: KubernetesTestCluster,
) -> None:
    kube = cluster.kube()
    kube.create_namespaced_pod("default", sleeper_pod("guarded", "w1", {"app": "guarded"}))
    wait_for(lambda: pod_phase(kube, "guarded") == "Running", "the guarded pod to run")
    budget = {
        "apiVersion": "policy/v1beta1",  # what Kubernetes 1.20 serves
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "guarded"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
    }
    path = "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets"
    created = kube.api_client.call_api(
        "POST", kube.api_client.configuration.host + path,
        header_params={"Content-Type": "application/json"}, body=budget,
    )  # fmt: skip
    assert created.status == 201, created.data
    leave = {
        **cluster.section(cluster.control),
        "cordon": {"w1": "clusterplane: scale down"},
        "remove": {"w1": True},
    }

    def refused() -> dict[str, Any] | None:
        drain = cluster.runtimes["cp"].converge(leave)["drains"]["w1"]
        return drain if drain["blocked"] else None

    drain = wait_for(refused, "the eviction refused by the budget", timeout=30)
    assert drain["drained"] is False and drain["blocked"] == ["default/guarded"]
    assert pod_phase(kube, "guarded") == "Running"
    assert "w1" in {n.metadata.name for n in kube.list_node().items}  # held while guarded

    report = cluster.runtimes["cp"].converge({**leave, "remove": {"w1": "force"}})

    assert "deleted node w1" in report["messages"]  # the operator's drain deadline passed
    assert "w1" not in {n.metadata.name for n in kube.list_node().items}
    kube.delete_namespaced_pod("guarded", "default", grace_period_seconds=0)


def test_teardown_leaves_no_process_container_mount_cgroup_key_or_sysctl_behind(
    cluster: KubernetesTestCluster,
) -> None:
    sysctls_before = cluster.sysctls_before
    kube = cluster.kube()
    sleeper = gpu_pod("left-running", 4, node="w1")
    sleeper["spec"]["containers"][0]["command"] = ["sleep", "600"]
    kube.create_namespaced_pod("default", sleeper)
    wait_for(lambda: pod_phase(kube, "left-running") == "Running", "a pod left running")
    assert kernel_sysctls() != sysctls_before  # the kubelets changed them

    hosts = [*cluster.workers.values(), cluster.control]
    for host in hosts:
        assert cluster.runtimes[host.name].teardown()["ok"]

    for host in hosts:
        assert host.processes() == []
        assert not host.path(cluster.base).exists()
        assert not host.path(f"{cluster.root}/agent/kubernetes.json").exists()
        mounts = host.run(["cat", "/proc/self/mountinfo"]).stdout
        assert cluster.base not in mounts and "/var/lib/kubelet" not in mounts
        assert "/var/log/pods" not in mounts
        assert host.run(["ip", "netns", "list"]).stdout.strip() == ""
        assert "cppods0" not in host.run(["ip", "link", "show"]).stdout
    for name in cluster.workers:
        assert not list(Path("/sys/fs/cgroup").glob(f"*/clusterplane-{name}"))
    assert _processes_mentioning(cluster.base) == []
    assert kernel_sysctls() == sysctls_before
    assert not Path(cluster.machine_record).exists()
    assert cluster.runtimes["cp"].teardown()["messages"] == ["nothing to tear down"]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
    return found

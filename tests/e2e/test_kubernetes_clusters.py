"""KUBERNETES clusters for real: the official SDK creates one on enrolled agent hosts, and
its user runs GPU pods with the Python `kubernetes` client and the kubeconfig of
get-credentials.

Five machines of an `AgentFleet` (tests/support/agent_fleet.py: network, UTS and mount
namespaces on a private loopback bridge, each with its own /etc and /var and its agent):
one control-plane host without GPUs, which runs the cluster's etcd and API server, and
four with 8 fake GPUs each. The region has no fleet-file hosts. The tests share one
cluster and run in file order: create, nodes and GPU pods; a Deployment that keeps
serving while the cluster scales to 24 GPUs and back to 16 (evicting only from the node
that leaves), while the server restarts and while a credential rotation reaches the
cluster; a stopped kubelet that leads to the node's drain and replacement; a delete that
leaves nothing on the hosts. Then an 8-GPU cluster with OIDC settings, whose API server
runs with them, and hosts returned without a trace. Every kubeconfig is the one the
official CLI's `clusters get-credentials` writes; kubectl reads it too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import together
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes import watch as kube_watch
from kubernetes.client.rest import ApiException
from urllib3.exceptions import MaxRetryError, SSLError

from tests.support.agent_fleet import AgentFleet, AgentHost
from tests.support.agents import DRIVER_VERSION, REGION, wait_for
from tests.support.cli import Tg, cli_env, kubectl_program
from tests.support.kubernetes import (
    BUILD,
    BUSYBOX_IMAGE,
    MACHINE_RECORD,
    PAUSE_IMAGE,
    PROGRAMS,
    machine_to_ourselves,
    missing_pieces,
)

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
IMAGES = [str(BUILD / "images" / "pause.tar"), str(BUILD / "images" / "busybox.tar")]
SERVER = f"""
[kubernetes]
version = "v1.20.2"
node_status_seconds = 2
node_grace_seconds = 8
drain_deadline_seconds = 6000
sandbox_image = "{PAUSE_IMAGE}"
images = {IMAGES!r}
""".replace("'", '"')
WORKERS = ("w1", "w2", "w3", "w4")
GPU = "nvidia.com/gpu"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFleet]:
    missing = missing_pieces()
    if missing:
        pytest.fail(f"Kubernetes is not installed ({missing}): run make kubernetes")
    workdir = tmp_path_factory.mktemp("kubernetes-clusters")
    with (
        machine_to_ourselves(),
        AgentFleet(
            workdir,
            fleet_yaml=FLEET,
            silence_seconds=3.0,
            agent_config={"converge_seconds": 1.0, "num_cpu_cores": 4, "memory_gib": 8},
            server_toml=SERVER,
        ) as machines,
    ):
        runtime = {
            "base_dir": f"{machines.network.host_root}/k8s",
            "binaries": {program: str(BUILD / "bin" / program) for program in PROGRAMS},
            "machine_record": MACHINE_RECORD,  # one for every host: they share the kernel
        }
        config = {"runtimes": {"kubernetes": runtime}}
        machines.add_host("ctl", gpus=0, sshd=False, wait=False, config=config)
        for name in WORKERS:
            machines.add_host(name, sshd=False, wait=False, config=config)
        for name in ("ctl", *WORKERS):
            machines.wait_enrolled(name)
        yield machines


@pytest.fixture(scope="module")
def client(fleet: AgentFleet) -> Iterator[together.Together]:
    with together.Together(base_url=fleet.server.base_url, api_key=fleet.server.api_key) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def tg(fleet: AgentFleet, tmp_path_factory: pytest.TempPathFactory) -> Tg:
    """The official CLI, as the cluster's user runs it."""
    home = tmp_path_factory.mktemp("cli-home")
    return Tg(env=cli_env(fleet.server, home), cwd=home)


def oidc(fleet: AgentFleet) -> dict[str, str]:
    """OIDC settings whose issuer is on the hosts' bridge, where nothing listens (the API
    server fetches its discovery document lazily; the flags are what is checked)."""
    return {
        "issuer_url": f"https://{fleet.network.gateway}:9",
        "client_id": "clusterplane-e2e",
        "username_claim": "email",
        "username_prefix": "oidc:",
        "group_claim": "groups",
        "group_prefix": "oidc:",
    }


@pytest.fixture(scope="module")
def cluster_id(fleet: AgentFleet, client: together.Together) -> Iterator[str]:
    created = client.clusters.create(
        cluster_name="k8s-e2e",
        billing_type="ON_DEMAND",
        cluster_type="KUBERNETES",
        gpu_type="H100_SXM",
        num_gpus=16,
        region=REGION,
        nvidia_version_id=DRIVER_VERSION,
        cluster_config={"load_balancer": "NONE"},
        acceptance_tests_params={"enabled": False},
    )
    try:
        ready(client, created.cluster_id, workers=2)
        yield str(created.cluster_id)
    finally:  # after a failure too: the machine's cgroups and sysctls are shared
        delete_and_wait(fleet, client, str(created.cluster_id))


def delete_and_wait(fleet: AgentFleet, client: together.Together, cluster_id: str) -> None:
    """Delete the cluster (when it is still there) and wait until every host is clean."""
    if fleet.closed:
        return  # the last test deleted it and closed the fleet
    with fleet.admin() as http:
        if http.get(f"/v1/compute/clusters/{cluster_id}").status_code == 404:
            return
    client.clusters.delete(cluster_id)

    def gone() -> bool:
        with fleet.admin() as http:
            response = http.get(f"/v1/compute/clusters/{cluster_id}")
        return response.status_code == 404

    wait_for(gone, "the cluster deleted", timeout=90)
    for machine in fleet.hosts.values():
        wait_for(lambda m=machine: not m.path(f"{fleet.network.host_root}/k8s").exists(),
                 f"{machine.name} clean", timeout=30)  # fmt: skip


def ready(client: together.Together, cluster_id: str, *, workers: int, timeout: float = 120) -> Any:
    def probe() -> Any:
        cluster = client.clusters.retrieve(cluster_id)
        running = [n for n in cluster.gpu_worker_nodes if n.status == "Running"]
        return cluster if cluster.status == "Ready" and len(running) == workers else None

    return wait_for(probe, f"cluster {cluster_id} Ready with {workers} workers", timeout=timeout)


def credentials(tg: Tg, cluster_id: str) -> Path:
    """A kubeconfig file, as `together clusters get-credentials` writes it."""
    path = tg.cwd / f"kubeconfig-{uuid.uuid4().hex[:8]}"
    tg.text("clusters", "get-credentials", cluster_id, "--file", str(path))
    return path


def kube(tg: Tg, cluster_id: str) -> kube_client.CoreV1Api:
    """The Python client with the kubeconfig get-credentials writes."""
    loaded = kube_config.new_client_from_config(config_file=str(credentials(tg, cluster_id)))
    return kube_client.CoreV1Api(loaded)


def ready_gpu_nodes(api: kube_client.CoreV1Api) -> dict[str, str]:
    ready = {}
    for node in api.list_node().items:
        conditions = node.status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            ready[node.metadata.name] = (node.status.allocatable or {}).get(GPU, "0")
    return ready


def worker_nodes(client: together.Together, cluster_id: str) -> dict[str, str]:
    """Running GPU workers: Kubernetes node name -> host name."""
    cluster = client.clusters.retrieve(cluster_id)
    return {n.node_name: n.host_name for n in cluster.gpu_worker_nodes if n.status == "Running"}


def gpu_pod(name: str, gpus: int) -> dict[str, Any]:
    script = "ls /dev | grep nvidia | sort; echo NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"
    container = {
        "name": "main",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
        "resources": {"limits": {GPU: str(gpus)}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container]},
    }


def test_a_16_gpu_cluster_has_two_ready_nodes_and_runs_an_8_gpu_pod_but_not_a_9_gpu_one(
    fleet: AgentFleet, client: together.Together, tg: Tg, cluster_id: str
) -> None:
    kubeconfig = credentials(tg, cluster_id)
    api = kube_client.CoreV1Api(kube_config.new_client_from_config(config_file=str(kubeconfig)))
    nodes = wait_for(lambda: ready_gpu_nodes(api) if len(ready_gpu_nodes(api)) == 2 else None,
                     "two Ready nodes")  # fmt: skip
    assert sorted(nodes) == sorted(worker_nodes(client, cluster_id))
    assert set(nodes.values()) == {"8"}
    kubectl = subprocess.run(
        [kubectl_program(), "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "name"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert kubectl.returncode == 0, kubectl.stderr
    assert sorted(kubectl.stdout.split()) == sorted(f"node/{n}" for n in nodes)

    api.create_namespaced_pod("default", gpu_pod("eight", 8))
    api.create_namespaced_pod("default", gpu_pod("nine", 9))
    wait_for(
        lambda: api.read_namespaced_pod("eight", "default").status.phase == "Succeeded",
        "the 8-GPU pod to finish",
        timeout=60,
    )
    log = api.read_namespaced_pod_log("eight", "default").split()
    assert log[:8] == [f"nvidia{i}" for i in range(8)]
    assert sorted(log[8].removeprefix("NVIDIA_VISIBLE_DEVICES=").split(",")) == list("01234567")

    def unschedulable() -> str | None:
        events = api.list_namespaced_event("default", field_selector="involvedObject.name=nine")
        return next((e.message for e in events.items if e.reason == "FailedScheduling"), None)

    assert "Insufficient nvidia.com/gpu" in wait_for(unschedulable, "the 9-GPU pod refused")
    assert api.read_namespaced_pod("nine", "default").status.phase == "Pending"
    api.delete_namespaced_pod("nine", "default", grace_period_seconds=0)


def deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": "web"}
    container = {
        "name": "web",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "echo serving from $(hostname); sleep 3600"],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
            },
        },
    }


def running_web_pods(api: kube_client.CoreV1Api) -> dict[str, str]:
    """Running pods of the Deployment: pod name -> node."""
    pods = api.list_namespaced_pod("default", label_selector="app=web").items
    return {
        p.metadata.name: p.spec.node_name
        for p in pods
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    }


def test_a_deployment_keeps_serving_while_the_cluster_scales_to_24_gpus(
    fleet: AgentFleet, client: together.Together, tg: Tg, cluster_id: str
) -> None:
    api = kube(tg, cluster_id)
    apps = kube_client.AppsV1Api(api.api_client)
    apps.create_namespaced_deployment("default", deployment(4))
    wait_for(lambda: len(running_web_pods(api)) == 4, "4 web pods running", timeout=60)
    before = pod_states(api)

    client.clusters.update(cluster_id, num_gpus=24)
    ready(client, cluster_id, workers=3)

    wait_for(lambda: len(ready_gpu_nodes(api)) == 3, "the third node Ready")
    assert pod_states(api) == before  # nothing moved or restarted while the node joined
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 9}})
    wait_for(lambda: len(set(running_web_pods(api).values())) == 3, "pods on all three nodes",
             timeout=60)  # fmt: skip


def test_restarting_the_server_leaves_running_pods_untouched(
    fleet: AgentFleet, client: together.Together, tg: Tg, cluster_id: str
) -> None:
    api = kube(tg, cluster_id)
    wait_for(lambda: len(running_web_pods(api)) == 9, "9 web pods running", timeout=60)
    before = pod_states(api)
    fleet.server.stop()
    fleet.server.start()
    ready(client, cluster_id, workers=3)
    time.sleep(3)  # a few agent passes against the restarted server

    assert pod_states(api) == before


def test_a_credential_rotation_reaches_the_running_cluster_and_its_pods_keep_running(
    fleet: AgentFleet, client: together.Together, tg: Tg, cluster_id: str
) -> None:
    old = kube(tg, cluster_id)
    before = pod_states(old)
    with fleet.admin() as http:
        rotated = http.post(f"/admin/v1/clusters/{cluster_id}/credentials/rotate")
    assert rotated.status_code == 200, rotated.text
    new = kube(tg, cluster_id)

    def ready_through_the_new_kubeconfig() -> dict[str, str] | None:
        try:
            nodes = ready_gpu_nodes(new)
        except (ApiException, MaxRetryError):
            return None  # the control plane restarting with the new CA
        return nodes if len(nodes) == 3 else None

    wait_for(ready_through_the_new_kubeconfig, "three Ready nodes, new kubeconfig", timeout=90)
    wait_for(lambda: refused(old), "the old kubeconfig refused", timeout=30)
    wait_for(lambda: len(running_web_pods(new)) == 9, "9 web pods running", timeout=60)
    assert pod_states(new) == before  # a rotation restarts kubelets, never pods


def refused(api: kube_client.CoreV1Api) -> bool:
    """The API server no longer takes these credentials (or no longer proves itself with
    the CA they trust)."""
    try:
        api.list_node()
    except ApiException as exc:
        return exc.status == 401
    except MaxRetryError as exc:
        return isinstance(exc.reason, SSLError)
    return False


def pod_states(api: kube_client.CoreV1Api) -> dict[str, tuple[str, str, int]]:
    """Each pod's uid, phase and restarts: what a disturbed pod would change."""
    states = {}
    for pod in api.list_namespaced_pod("default").items:
        restarts = sum(c.restart_count for c in pod.status.container_statuses or [])
        states[pod.metadata.name] = (pod.metadata.uid, pod.status.phase, restarts)
    return states


def kubelet_pid(machine: AgentHost) -> int:
    [record] = machine.state.rglob("kubernetes.json")
    return int(json.loads(record.read_text())["procs"]["kubelet"]["pid"])


def test_a_stopped_kubelet_makes_the_cluster_degraded_and_the_node_is_drained_and_replaced(
    fleet: AgentFleet, client: together.Together, tg: Tg, cluster_id: str
) -> None:
    api = kube(tg, cluster_id)
    before = worker_nodes(client, cluster_id)
    victim_node = sorted(before)[0]
    victim: AgentHost = fleet.hosts[before[victim_node]]
    kubelet = kubelet_pid(victim)
    watch = NodeWatch(api, victim_node)
    os.kill(kubelet, signal.SIGSTOP)  # hung, not dead: its agent would start a dead one again
    try:
        wait_for(
            lambda: client.clusters.retrieve(cluster_id).status == "Degraded",
            "the cluster Degraded (the kubelet silent to its agent, the node NotReady)",
            timeout=60,
        )
        [node] = [
            n for n in client.clusters.retrieve(cluster_id).gpu_worker_nodes
            if n.node_name == victim_node
        ]  # fmt: skip

        def proposed() -> Any:
            page = client.clusters.remediations.list(
                node.instance_id, cluster_id=cluster_id, state=["PENDING_APPROVAL"]
            )
            return page.remediations[0] if page.remediations else None

        repair = wait_for(proposed, "a proposed repair of the node", timeout=30)
        client.clusters.remediations.approve(
            repair.id, cluster_id=cluster_id, instance_id=node.instance_id
        )
        ready(client, cluster_id, workers=3, timeout=120)
    finally:
        watch.stop()
        if _alive(kubelet):
            os.kill(kubelet, signal.SIGCONT)
    changes = watch.seen  # cordoned for its drain, then deleted
    assert changes[-1][0] == "DELETED" and any(cordoned for _, cordoned in changes[:-1]), changes
    after = worker_nodes(client, cluster_id)
    assert victim_node not in after and len(set(after) - set(before)) == 1
    wait_for(lambda: sorted(ready_gpu_nodes(api)) == sorted(after), "the new node Ready")
    assert victim_node not in {n.metadata.name for n in api.list_node().items}
    wait_for(lambda: not _alive(kubelet), "the released host's kubelet gone", timeout=60)
    wait_for(lambda: len(running_web_pods(api)) == 9, "9 web pods running again", timeout=60)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class NodeWatch:
    """Every change of one Node, as (event type, unschedulable), from a watch thread."""

    def __init__(self, api: kube_client.CoreV1Api, name: str):
        self.api, self.name = api, name
        self.seen: list[tuple[str, bool]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector, version = f"metadata.name={self.name}", None
        while not self._stopped.is_set():
            since = {"resource_version": version} if version else {}
            try:
                for event in kube_watch.Watch().stream(
                    self.api.list_node, field_selector=selector, timeout_seconds=300, **since
                ):
                    node = event["object"]
                    version = node.metadata.resource_version
                    self.seen.append((event["type"], bool(node.spec.unschedulable)))
                    if event["type"] == "DELETED":
                        return
            except Exception:  # the API server briefly unreachable: watch on from there
                time.sleep(0.5)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)


def test_scaling_back_to_16_gpus_evicts_pods_only_from_the_node_that_leaves(
    fleet: AgentFleet, client: together.Together, tg: Tg, cluster_id: str
) -> None:
    api = kube(tg, cluster_id)
    apps = kube_client.AppsV1Api(api.api_client)
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 12}})
    wait_for(lambda: len(running_web_pods(api)) == 12, "12 web pods running", timeout=60)
    spread = running_web_pods(api)
    assert len(set(spread.values())) == 3  # the replacement node serves too
    states = pod_states(api)

    client.clusters.update(cluster_id, num_gpus=16)
    ready(client, cluster_id, workers=2)

    remaining = set(worker_nodes(client, cluster_id))
    [left] = set(spread.values()) - remaining
    wait_for(lambda: sorted(ready_gpu_nodes(api)) == sorted(remaining), f"{left} deleted",
             timeout=60)  # fmt: skip
    after = wait_for(lambda: running_web_pods(api) if len(running_web_pods(api)) == 12 else None,
                     "12 web pods running again", timeout=60)  # fmt: skip
    kept = [pod for pod, node in spread.items() if node != left]
    assert {pod: after[pod] for pod in kept} == {pod: spread[pod] for pod in kept}
    assert {pod: pod_states(api)[pod] for pod in kept} == {pod: states[pod] for pod in kept}
    assert left not in after.values()


def test_deleting_the_cluster_leaves_nothing_on_its_hosts(
    fleet: AgentFleet, client: together.Together, cluster_id: str
) -> None:
    delete_and_wait(fleet, client, cluster_id)

    for machine in fleet.hosts.values():
        assert machine.agent_mounts() == []
        assert machine.run(["ip", "netns", "list"]).stdout.strip() == ""
    assert not list(Path("/sys/fs/cgroup").glob("*/clusterplane-*"))
    assert not Path(MACHINE_RECORD).exists()


def api_server_flags(machine: AgentHost) -> list[str] | None:
    """The running kube-apiserver's command line on a control-plane host, if any."""
    for record in machine.state.rglob("kubernetes.json"):
        proc = json.loads(record.read_text()).get("procs", {}).get("kube-apiserver")
        if proc is not None and _alive(int(proc["pid"])):
            return Path(f"/proc/{proc['pid']}/cmdline").read_bytes().decode().split("\0")
    return None


def test_an_oidc_clusters_settings_reach_its_api_server(
    fleet: AgentFleet, client: together.Together
) -> None:
    settings = oidc(fleet)
    created = client.clusters.create(
        cluster_name="k8s-oidc",
        billing_type="ON_DEMAND",
        cluster_type="KUBERNETES",
        gpu_type="H100_SXM",
        num_gpus=8,
        region=REGION,
        nvidia_version_id=DRIVER_VERSION,
        cluster_config={"load_balancer": "NONE"},
        oidc_config=settings,
        acceptance_tests_params={"enabled": False},
    )
    try:
        flags = wait_for(lambda: api_server_flags(fleet.hosts["ctl"]), "its API server", 60)
    finally:
        delete_and_wait(fleet, client, str(created.cluster_id))

    assert f"--oidc-issuer-url={settings['issuer_url']}" in flags
    assert "--oidc-client-id=clusterplane-e2e" in flags
    assert "--oidc-username-claim=email" in flags and "--oidc-groups-claim=groups" in flags
    assert "--oidc-username-prefix=oidc:" in flags and "--oidc-groups-prefix=oidc:" in flags


def test_the_hosts_are_returned_without_a_trace(fleet: AgentFleet) -> None:
    started = time.monotonic()
    fleet.close(verify=True)  # raises on any process left in a host, or anything else
    assert time.monotonic() - started < 30

"""A real Kubernetes cluster on namespaced test hosts, driven through the node runtime.

`KubernetesTestCluster(network)` makes a control-plane host of a `HostNetwork` and issues
the cluster's CA and admin kubeconfig exactly as clusterplane does for a cluster
(`services.clusters.credentials`); `add_worker(name)` makes a host with 8 fake GPUs (character
devices made with mknod) and signs its node pair with the CA, as the control plane does
for each worker. `converge(host)` runs `clusterplane.agent.kubernetes.KubernetesRuntime`
for it in this process, its commands entering the host (`HostContext`). `kube()` is a
Python `kubernetes` client built from the kubeconfig clusterplane hands out.

The binaries and images come from scripts/ensure-kubernetes.sh (`make kubernetes`): under
$CLUSTERPLANE_KUBERNETES_CACHE (default /var/cache/clusterplane)/kubernetes.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from clusterplane.agent.kubernetes.pki import issue, node_user
from clusterplane.agent.kubernetes.plugin import KubernetesPlugin
from clusterplane.agent.kubernetes.runtime import KubernetesRuntime
from clusterplane.agent.runtimes import RuntimeContext
from clusterplane.services.clusters.credentials import build_kubeconfig, issue_cluster_credentials
from clusterplane.settings import KubernetesSettings
from tests.support.hosts import Host, HostNetwork
from tests.support.slurm import HostContext

GPUS_PER_WORKER = 8
CACHE = Path(os.environ.get("CLUSTERPLANE_KUBERNETES_CACHE", "/var/cache/clusterplane"))
BUILD = CACHE / "kubernetes"
PROGRAMS = ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubelet")
SYSTEM_PROGRAMS = ("etcd", "containerd", "ctr", "runc")
# One file for every test host of this machine: they share its kernel (its sysctls).
MACHINE_RECORD = "/tmp/clusterplane-kubernetes-tests/machine.json"
PAUSE_IMAGE = "localhost/clusterplane/pause:3.2"
BUSYBOX_IMAGE = "localhost/clusterplane/busybox:1.35"


def missing_pieces() -> list[str]:
    """What scripts/ensure-kubernetes.sh installs that this machine lacks."""
    needed = [BUILD / "bin" / program for program in PROGRAMS]
    needed += [BUILD / "images" / "pause.tar", BUILD / "images" / "busybox.tar"]
    missing = [str(path) for path in needed if not path.exists()]
    for program in SYSTEM_PROGRAMS:
        if not any(Path(d, program).exists() for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin")):
            missing.append(program)
    return missing


@contextlib.contextmanager
def machine_to_ourselves() -> Iterator[None]:
    """One group of real-Kubernetes tests at a time on this machine (xdist workers run
    files side by side): kubelets rewrite the kernel's sysctls, which the tests check are
    restored, and each group starts a whole cluster. The lock is on the build directory."""
    handle = os.open(BUILD, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def kubernetes_options(host_root: str) -> dict[str, Any]:
    """The agent's `[runtimes.kubernetes]` options for test hosts: files in each host's own
    directory, the built binaries, one machine record for the shared kernel."""
    return {
        "base_dir": f"{host_root}/k8s",
        "binaries": {program: str(BUILD / "bin" / program) for program in PROGRAMS},
        "machine_record": MACHINE_RECORD,
    }


def namespaced_kubernetes(host: Host, options: dict[str, Any]) -> KubernetesPlugin:
    """The agent's `kubernetes` runtime (PEM material from the assignment's secrets), its
    daemons run on `host`; what it started is recorded in the agent's state dir."""

    def context(ctx: RuntimeContext) -> HostContext:
        return HostContext(host, ctx.state_dir)

    return KubernetesPlugin(host=context, options=options)


# The server's [kubernetes] settings for test clusters: fast status and failure detection,
# the images `make kubernetes` builds.
KUBERNETES_SETTINGS = KubernetesSettings(
    version="v1.20.2",
    node_status_seconds=2,
    node_grace_seconds=8,
    drain_deadline_seconds=6000,
    sandbox_image="localhost/clusterplane/pause:3.2",
    images=(str(BUILD / "images" / "pause.tar"), str(BUILD / "images" / "busybox.tar")),
)


class KubernetesTestCluster:
    def __init__(self, network: HostNetwork, *, name: str = "lab", node_status_seconds: int = 2):
        self.network = network
        self.name = name
        self.root = str(network.host_root)
        self.node_status_seconds = node_status_seconds
        self.control = network.add_host("cp")
        self.cluster_id = f"c-{name}-{network.index}"
        self.credentials = issue_cluster_credentials(
            cluster_id=self.cluster_id, now=datetime.now(UTC)
        )
        self.workers: dict[str, Host] = {}
        self.node_pairs: dict[str, tuple[str, str]] = {}
        self.oidc: dict[str, str] | None = None
        self.sysctls_before: dict[str, str] = {}
        self.runtimes: dict[str, KubernetesRuntime] = {"cp": self._runtime(self.control)}

    @property
    def base(self) -> str:
        return f"{self.root}/k8s"

    @property
    def machine_record(self) -> str:
        return MACHINE_RECORD

    @property
    def api_server(self) -> str:
        return f"https://{self.control.address}:6443"

    def _runtime(self, host: Host) -> KubernetesRuntime:
        context = HostContext(host, host.path(f"{self.root}/agent"))
        binaries = {program: str(BUILD / "bin" / program) for program in PROGRAMS}
        return KubernetesRuntime(context, self.base, binaries, self.machine_record)

    def gpu_devices(self) -> tuple[str, ...]:
        return tuple(f"{self.root}/dev/nvidia{i}" for i in range(GPUS_PER_WORKER))

    def pod_cidr(self, host: Host) -> str:
        """A /28 (13 pods) per host: 127.2.<network>.<16 n> for the network's n-th host."""
        number = int(host.address.rsplit(".", 1)[1]) - 10
        assert 1 <= number <= 15, "at most 15 hosts get a pod subnet"
        return f"127.2.{self.network.index}.{16 * number}/28"

    def add_worker(self, name: str) -> Host:
        host = self.network.add_host(name)
        host.path(f"{self.root}/dev").mkdir()
        for index, device in enumerate(self.gpu_devices()):
            os.mknod(host.path(device), 0o666 | stat.S_IFCHR, os.makedev(195, index))
        pair = issue(
            self.credentials.ca_cert_pem,
            self.credentials.ca_key_pem,
            node_user(name),
            groups=("system:nodes",),
        )
        self.node_pairs[name] = (pair.cert_pem, pair.key_pem)
        self.workers[name] = host
        self.runtimes[name] = self._runtime(host)
        return host

    def section(self, host: Host) -> dict[str, Any]:
        common = {
            "cluster": self.name,
            "address": host.address,
            "ca_cert": self.credentials.ca_cert_pem,
            "pod_routes": {self.pod_cidr(w): w.address for w in self.workers.values()},
            "node_grace_seconds": 8,
        }
        if host is self.control:
            section = {
                **common,
                "role": "control_plane",
                "ca_key": self.credentials.ca_key_pem,
                "service_cidr": f"127.3.{self.network.index}.0/24",
            }
            if self.oidc is not None:
                section["oidc"] = self.oidc
            return section
        cert, key = self.node_pairs[host.name]
        return {
            **common,
            "role": "worker",
            "api_server": self.api_server,
            "node_name": host.name,
            "node_cert": cert,
            "node_key": key,
            "pod_cidr": self.pod_cidr(host),
            "pod_reach": [self.network.subnet],
            "gpus": [
                {"id": f"GPU-{host.name}-{i}", "device": device}
                for i, device in enumerate(self.gpu_devices())
            ],
            "node_status_seconds": self.node_status_seconds,
            "sandbox_image": PAUSE_IMAGE,
            "images": [str(BUILD / "images" / "pause.tar"), str(BUILD / "images" / "busybox.tar")],
        }

    def converge(self, host: Host) -> dict[str, Any]:
        return self.runtimes[host.name].converge(self.section(host))

    def kubeconfig(self) -> dict[str, Any]:
        """The kubeconfig clusterplane hands out for this cluster (get-credentials)."""
        text = build_kubeconfig(
            cluster_id=self.cluster_id,
            cluster_name=self.name,
            server_url=self.api_server,
            credentials=self.credentials,
        )
        loaded = yaml.safe_load(base64.b64decode(text))
        assert isinstance(loaded, dict)
        return loaded

    def kube(self) -> kube_client.CoreV1Api:
        api_client = kube_config.new_client_from_config_dict(self.kubeconfig())
        return kube_client.CoreV1Api(api_client)

"""The files and command lines of a Kubernetes host, rendered from its section.

`Layout(base)` names every path under the runtime's base directory on the host (one
directory: teardown removes it whole). The render functions are pure: they return file
contents and argv lists for etcd, the API server, the scheduler, the controller-manager
(control plane), containerd and the kubelet (worker), and the lo127 CNI configuration.
Ports of the control plane's own listeners live on the host's loopback (etcd) or are off
(scheduler and controller-manager serve nothing); the API server binds the host address.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from clusterplane.agent.kubernetes.probe import KUBELET_HEALTHZ_PORT
from clusterplane.agent.kubernetes.section import KubernetesSection

ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
KUBELET_PORT = 10250
POD_BRIDGE = "cppods0"
# Not run by these clusters (no cloud, no Service proxy, pod subnets come from the section).
DISABLED_CONTROLLERS = "*,-nodeipam,-cloud-node-lifecycle,-route,-service"
# The kubelet's own paths outside --root-dir (1.20 hard-codes them): bind-mounted from
# the base directory so that nothing of a node's lands elsewhere on the host.
HOST_PATHS = {
    "device-plugins": "/var/lib/kubelet/device-plugins",
    "pod-logs": "/var/log/pods",
    "container-logs": "/var/log/containers",
}


@dataclass(frozen=True)
class Layout:
    base: str  # host path
    # A worker's node name: it names the containerd socket, whose path containerd's shims
    # carry in their command line, so that a teardown finds this node's shims only, even
    # where hosts share a process table (test hosts) and the same base path.
    node: str = ""

    def path(self, *parts: str) -> str:
        return "/".join((self.base, *parts))

    @property
    def pki(self) -> str:
        return self.path("pki")

    @property
    def log(self) -> str:
        return self.path("log")

    @property
    def containerd_socket(self) -> str:
        return self.path(
            "containerd", f"containerd-{self.node}.sock" if self.node else "containerd.sock"
        )

    def kubeconfig(self, user: str) -> str:
        return self.path("etc", f"{user}.kubeconfig")

    def cert(self, name: str) -> str:
        return self.path("pki", f"{name}.crt")

    def key(self, name: str) -> str:
        return self.path("pki", f"{name}.key")


def api_server_url(section: KubernetesSection) -> str:
    return f"https://{section.address}:{section.api_port}"


def serving_names(section: KubernetesSection) -> tuple[str, ...]:
    first_service_ip = str(next(ipaddress.IPv4Network(section.service_cidr).hosts()))
    cluster_names = ("kubernetes", "kubernetes.default", "kubernetes.default.svc")
    return (
        section.address,
        first_service_ip,
        *cluster_names,
        "kubernetes.default.svc.cluster.local",
        *section.api_server_names,
    )


def etcd_argv(section: KubernetesSection, layout: Layout, program: str) -> list[str]:
    client = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
    return [
        program,
        f"--name={section.cluster}",
        f"--data-dir={layout.path('etcd')}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={section.cluster}={peer}",
        "--listen-metrics-urls=",
    ]


def api_server_argv(section: KubernetesSection, layout: Layout, program: str) -> list[str]:
    argv = [
        program,
        f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--bind-address={section.address}",
        f"--advertise-address={section.address}",
        f"--secure-port={section.api_port}",
        "--insecure-port=0",
        f"--tls-cert-file={layout.cert('apiserver')}",
        f"--tls-private-key-file={layout.key('apiserver')}",
        f"--client-ca-file={layout.cert('ca')}",
        f"--kubelet-client-certificate={layout.cert('apiserver-kubelet-client')}",
        f"--kubelet-client-key={layout.key('apiserver-kubelet-client')}",
        "--kubelet-preferred-address-types=InternalIP",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=false",
        "--allow-privileged=true",
        "--profiling=false",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={layout.path('pki', 'sa.pub')}",
        f"--service-account-signing-key-file={layout.key('sa')}",
        f"--service-cluster-ip-range={section.service_cidr}",
    ]
    if ipaddress.IPv4Address(section.address).is_loopback:
        argv.append("--endpoint-reconciler-type=none")  # v1 Endpoints refuse 127.x
    oidc = section.oidc
    if oidc is not None:
        argv += [
            f"--oidc-issuer-url={oidc.issuer_url}",
            f"--oidc-client-id={oidc.client_id}",
            f"--oidc-username-claim={oidc.username_claim}",
            f"--oidc-username-prefix={oidc.username_prefix}",
            f"--oidc-groups-claim={oidc.group_claim}",
            f"--oidc-groups-prefix={oidc.group_prefix}",
        ]
        if oidc.ca_cert:
            argv.append(f"--oidc-ca-file={layout.path('pki', 'oidc-ca.crt')}")
    return argv


def scheduler_argv(layout: Layout, program: str) -> list[str]:
    return [
        program,
        f"--kubeconfig={layout.kubeconfig('kube-scheduler')}",
        "--leader-elect=false",
        "--port=0",
        "--secure-port=0",
    ]


def controller_manager_argv(section: KubernetesSection, layout: Layout, program: str) -> list[str]:
    grace = section.node_grace_seconds
    return [
        program,
        f"--kubeconfig={layout.kubeconfig('kube-controller-manager')}",
        "--leader-elect=false",
        "--port=0",
        "--secure-port=0",
        f"--service-account-private-key-file={layout.key('sa')}",
        f"--root-ca-file={layout.cert('ca')}",
        "--use-service-account-credentials=true",
        f"--controllers={DISABLED_CONTROLLERS}",
        f"--node-monitor-grace-period={grace}s",
        f"--node-monitor-period={max(1, min(5, grace // 4))}s",
    ]


def containerd_config(section: KubernetesSection, layout: Layout, cni_bin: str) -> str:
    root = layout.path("containerd")
    disabled = [
        f"io.containerd.snapshotter.v1.{name}" for name in ("btrfs", "zfs", "aufs", "devmapper")
    ]
    # restrict_oom_score_adj: hosts without CAP_SYS_RESOURCE cannot lower a score below
    # containerd's own, and runc then fails every sandbox.
    return f"""version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = {json.dumps([*disabled, "io.containerd.tracing.processor.v1.otlp"])}
[grpc]
  address = "{layout.containerd_socket}"
[ttrpc]
  address = "{layout.containerd_socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{section.sandbox_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{root}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{layout.path("cni", "net.d")}"
"""


def cgroup_root(section: KubernetesSection) -> str:
    return f"clusterplane-{section.node_name}"


def kubelet_config(section: KubernetesSection, layout: Layout) -> str:
    period = f"{section.node_status_seconds}s"
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": section.address,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": section.address,
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": layout.cert("ca")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup_root(section)}",
        "failSwapOn": False,
        "makeIPTablesUtilChains": False,
        "clusterDomain": "cluster.local",
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "nodeStatusUpdateFrequency": period,
        "nodeStatusReportFrequency": period,
    }
    return json.dumps(config, indent=1)


def kubelet_argv(section: KubernetesSection, layout: Layout, program: str) -> list[str]:
    labels = {"clusterplane.io/node": section.node_name, **section.node_labels}
    socket = layout.containerd_socket
    return [
        program,
        f"--config={layout.path('etc', 'kubelet.json')}",
        f"--kubeconfig={layout.kubeconfig('kubelet')}",
        "--container-runtime=remote",
        f"--container-runtime-endpoint=unix://{socket}",
        f"--containerd={socket}",
        "--runtime-request-timeout=2m",
        f"--root-dir={layout.path('kubelet')}",
        f"--cert-dir={layout.path('kubelet', 'pki')}",
        f"--volume-plugin-dir={layout.path('kubelet', 'volume-plugins')}",
        f"--hostname-override={section.node_name}",
        f"--node-ip={section.address}",
        "--node-labels=" + ",".join(f"{key}={value}" for key, value in sorted(labels.items())),
        "--v=1",
    ]


def cni_config(section: KubernetesSection, layout: Layout) -> str:
    subnet = ipaddress.IPv4Network(section.pod_cidr)
    reach = [*section.pod_reach, *(c for c in section.pod_routes if c != section.pod_cidr)]
    config = {
        "cniVersion": "0.4.0",
        "name": "lo127",
        "type": "lo127",
        "bridge": POD_BRIDGE,
        "subnet": str(subnet),
        "gateway": str(next(subnet.hosts())),
        "dataDir": layout.path("cni", "ipam"),
        "routes": list(dict.fromkeys(reach)),
    }
    return json.dumps(config)

"""The `kubernetes` section of a host's assignment, validated into a `KubernetesSection`.

Schema (a JSON object; unknown keys are refused). PEM material reaches the runtime from
the assignment's secrets (`plugin` resolves the `*_secret` names), never
inside the section itself:

    role                "control_plane" | "worker"                                  required
    cluster             the cluster's name ([a-z0-9-], 1-63)                         required
    address             this host's IP address: the API server binds and advertises required
                        it (control plane); the kubelet's node IP (worker)
    ca_cert             the cluster CA's certificate (PEM)                          required
    ca_key              the cluster CA's private key (PEM)                 control plane: required
    api_port            the API server's port (control plane)                      default 6443
    api_server_names    extra DNS names or IPs in the API server's certificate     default []
                        (the names a kubeconfig reaches it by)
    service_cidr        the Services' cluster IP range (control plane)         default 10.96.0.0/16
    oidc                {issuer_url, client_id, username_claim, username_prefix,   default none
                        group_claim, group_prefix, ca_cert?}: the API server's
                        --oidc-* flags (the cluster's `oidc_config`)
    node_grace_seconds  the controller-manager's node-monitor grace period; on a   default 40
                        worker, how long its kubelet may fail its health probe
                        before `daemon_health` says so
    cordon              {node: reason} clusterplane keeps cordoned and drained;    default {}
                        the reason starts with `clusterplane:` (control plane)
    remove              {node: true | "force"}: Node objects deleted once drained  default {}
                        or not ready; "force": at once (the drain deadline passed)
    api_server          https://HOST:PORT of the API server (worker)               worker: required
    node_name           this worker's Node name (a DNS label)                      worker: required
    node_cert, node_key its client certificate (CN system:node:NAME, O             worker: required
                        system:nodes) and key, signed by the cluster CA
    pod_cidr            this worker's pod subnet (lo127 CNI: inside 127.0.0.0/8)   worker: required
    pod_routes          {pod cidr: host address}: the other workers' pod subnets   default {}
                        and where they live (every role: pods reach the API server)
    pod_reach           more 127.x ranges pods reach through their gateway (the    default []
                        control plane's address, the hosts' subnet)
    gpus                [{"id": str, "device": path}]: the GPUs the device plugin  default []
                        advertises and hands to pods (device files must exist)
    gpu_resource        the extended resource the GPUs are advertised as     default nvidia.com/gpu
    node_labels         {key: value} the kubelet registers its Node with           default {}
    node_status_seconds the kubelet's node status period                          default 10
    sandbox_image       containerd's pause image            default registry.k8s.io/pause:3.2
    images              image tarballs (absolute paths) imported into containerd   default []
    version             the version the Kubernetes programs must report (`--version`, default ""
                        e.g. "v1.20.2"); "": any
    binaries            {program: absolute path} for etcd, kube-apiserver,         default {}
                        kube-scheduler, kube-controller-manager, kubelet,           (found on PATH)
                        containerd, ctr (the agent's configuration overrides these)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from clusterplane.agent import section_fields as fields
from clusterplane.agent.section_fields import SectionError

ROLES = ("control_plane", "worker")
PROGRAMS = (
    "etcd",
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kubelet",
    "containerd",
    "ctr",
)
CLUSTER = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NODE = CLUSTER
PATH = re.compile(r"^/[A-Za-z0-9_.+/-]{1,255}$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")
RESOURCE = re.compile(r"^[a-z0-9.-]{1,200}/[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]{0,250}[a-z0-9](@sha256:[0-9a-f]{64})?$")
VERSION = re.compile(r"^(v[0-9][0-9A-Za-z.+-]{0,40})?$")
GPU_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PEM = re.compile(r"^-----BEGIN [A-Z ]+-----\n[A-Za-z0-9+/=\n]+-----END [A-Z ]+-----\n?$")
DRAIN_PREFIX = "clusterplane:"
MAX_NODES = 4096
MAX_GPUS = 64
KEYS = {
    "role", "cluster", "address", "ca_cert", "ca_key", "api_port", "api_server_names",
    "service_cidr", "oidc", "node_grace_seconds", "cordon", "remove", "api_server",
    "node_name", "node_cert", "node_key", "pod_cidr", "pod_routes", "pod_reach", "gpus",
    "gpu_resource", "node_labels", "node_status_seconds", "sandbox_image", "images",
    "binaries", "version",
}  # fmt: skip
OIDC_KEYS = {
    "issuer_url", "client_id", "username_claim", "username_prefix", "group_claim",
    "group_prefix", "ca_cert",
}  # fmt: skip


@dataclass(frozen=True)
class Gpu:
    id: str
    device: str  # the device file on the host; the container sees /dev/<its name>


@dataclass(frozen=True)
class Oidc:
    issuer_url: str
    client_id: str
    username_claim: str
    username_prefix: str
    group_claim: str
    group_prefix: str
    ca_cert: str | None = None


@dataclass(frozen=True)
class KubernetesSection:
    role: str
    cluster: str
    address: str
    ca_cert: str
    ca_key: str | None = None
    api_port: int = 6443
    api_server_names: tuple[str, ...] = ()
    service_cidr: str = "10.96.0.0/16"
    oidc: Oidc | None = None
    node_grace_seconds: int = 40
    cordon: dict[str, str] = field(default_factory=dict)
    remove: dict[str, str] = field(default_factory=dict)  # node -> "drained" | "force"
    api_server: str = ""
    node_name: str = ""
    node_cert: str | None = None
    node_key: str | None = None
    pod_cidr: str = ""
    pod_routes: dict[str, str] = field(default_factory=dict)
    pod_reach: tuple[str, ...] = ()
    gpus: tuple[Gpu, ...] = ()
    gpu_resource: str = "nvidia.com/gpu"
    node_labels: dict[str, str] = field(default_factory=dict)
    node_status_seconds: int = 10
    sandbox_image: str = "registry.k8s.io/pause:3.2"
    images: tuple[str, ...] = ()
    binaries: dict[str, str] = field(default_factory=dict)
    version: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        """What, once changed, means leaving the cluster (teardown, then a fresh start)."""
        return (self.cluster, self.role, self.node_name)


def parse_section(raw: dict[str, Any]) -> KubernetesSection:
    unknown = set(raw) - KEYS
    if unknown:
        raise SectionError(f"unknown keys in the kubernetes section: {sorted(unknown)}")
    role = raw.get("role")
    if role not in ROLES:
        raise SectionError(f"role must be one of {ROLES}")
    common = {
        "role": role,
        "cluster": fields.match(raw, "cluster", CLUSTER),
        "address": _address(raw.get("address"), "address"),
        "ca_cert": _pem(raw.get("ca_cert"), "ca_cert"),
        "pod_routes": _pod_routes(raw.get("pod_routes", {})),
        "binaries": _binaries(raw.get("binaries", {})),
        "gpu_resource": fields.match(raw, "gpu_resource", RESOURCE, "nvidia.com/gpu"),
        "version": fields.match(raw, "version", VERSION, ""),
        "node_grace_seconds": _integer(raw.get("node_grace_seconds", 40), "node_grace_seconds", 2),
    }
    if role == "control_plane":
        return _control_plane(raw, common)
    return _worker(raw, common)


def _control_plane(raw: dict[str, Any], common: dict[str, Any]) -> KubernetesSection:
    extra = set(raw) & {"node_name", "node_cert", "node_key", "pod_cidr", "gpus", "api_server"}
    if extra:
        raise SectionError(f"a control plane takes no {sorted(extra)}")
    return KubernetesSection(
        **common,
        ca_key=_pem(raw.get("ca_key"), "ca_key"),
        api_port=_integer(raw.get("api_port", 6443), "api_port", 1, 65535),
        api_server_names=tuple(_san(v) for v in _list(raw, "api_server_names", 32)),
        service_cidr=_cidr(raw.get("service_cidr", "10.96.0.0/16"), "service_cidr"),
        oidc=_oidc(raw.get("oidc")),
        cordon=_cordons(raw.get("cordon", {})),
        remove=_removals(raw.get("remove", {})),
    )


def _worker(raw: dict[str, Any], common: dict[str, Any]) -> KubernetesSection:
    extra = set(raw) & {"ca_key", "oidc", "cordon", "remove", "api_server_names"}
    if extra:
        raise SectionError(f"a worker takes no {sorted(extra)}")
    pod_cidr = _cidr(raw.get("pod_cidr"), "pod_cidr")
    if not ipaddress.IPv4Network(pod_cidr).subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        raise SectionError("pod_cidr must lie inside 127.0.0.0/8 (the lo127 pod network)")
    return KubernetesSection(
        **common,
        api_server=_api_server(raw.get("api_server")),
        node_name=fields.match(raw, "node_name", NODE),
        node_cert=_pem(raw.get("node_cert"), "node_cert"),
        node_key=_pem(raw.get("node_key"), "node_key"),
        pod_cidr=pod_cidr,
        pod_reach=tuple(_cidr(v, "pod_reach", 32) for v in _list(raw, "pod_reach", 16)),
        gpus=_gpus(_list(raw, "gpus", MAX_GPUS)),
        node_labels=_labels(raw.get("node_labels", {})),
        node_status_seconds=_integer(
            raw.get("node_status_seconds", 10), "node_status_seconds", 1, 300
        ),
        sandbox_image=fields.match(raw, "sandbox_image", IMAGE, "registry.k8s.io/pause:3.2"),
        images=tuple(_path(v, "images") for v in _list(raw, "images", 16)),
    )


def _integer(value: object, key: str, low: int, high: int = 3600) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SectionError(f"{key} must be an integer from {low} to {high}")
    return value


def _list(raw: dict[str, Any], key: str, most: int) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list) or len(value) > most:
        raise SectionError(f"{key} must be a list of at most {most}")
    return value


def _address(value: object, key: str) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError as exc:
        raise SectionError(f"{key} must be an IPv4 address") from exc


def _cidr(value: object, key: str, longest: int = 28) -> str:
    try:
        network = ipaddress.IPv4Network(str(value))
    except ValueError as exc:
        raise SectionError(f"{key} must be an IPv4 network (a.b.c.d/n)") from exc
    if not 8 <= network.prefixlen <= longest:
        raise SectionError(f"{key} must be a /8 to /{longest} network")
    return str(network)


def _san(value: object) -> str:
    if isinstance(value, str) and DNS_NAME.match(value):
        return value
    raise SectionError(f"api_server_names: {str(value)[:80]!r} is not a DNS name or address")


def _pem(value: object, key: str) -> str:
    if not isinstance(value, str) or len(value) > 16384 or not PEM.match(value):
        raise SectionError(f"{key} must be PEM text (an assignment secret)")
    return value


def _path(value: object, key: str) -> str:
    return fields.path(value, key, PATH)


def _api_server(value: object) -> str:
    parts = urlsplit(str(value)) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme != "https"
        or not parts.hostname
        or parts.path not in ("", "/")
    ):
        raise SectionError("api_server must be https://HOST:PORT")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        raise SectionError("api_server must be https://HOST:PORT") from exc
    return f"https://{parts.netloc}"


def _oidc(value: object) -> Oidc | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - OIDC_KEYS:
        raise SectionError(f"oidc must be an object with keys from {sorted(OIDC_KEYS)}")
    texts: dict[str, str] = {}
    for key in sorted(OIDC_KEYS - {"ca_cert"}):
        text = value.get(key)
        if not isinstance(text, str) or not text.isprintable() or len(text) > 512:
            raise SectionError(f"oidc.{key} must be one line of text")
        texts[key] = text
    if urlsplit(texts["issuer_url"]).scheme != "https":
        raise SectionError("oidc.issuer_url must be an https URL")
    ca_cert = value.get("ca_cert")
    return Oidc(**texts, ca_cert=None if ca_cert in (None, "") else _pem(ca_cert, "oidc.ca_cert"))


def _pod_routes(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_NODES:
        raise SectionError("pod_routes must be an object of pod cidr -> host address")
    return {_cidr(cidr, "pod_routes"): _address(host, "pod_routes") for cidr, host in value.items()}


def _binaries(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or set(value) - set(PROGRAMS):
        raise SectionError(f"binaries must map some of {PROGRAMS} to paths")
    return {name: _path(path, f"binaries.{name}") for name, path in value.items()}


def _gpus(value: list[Any]) -> tuple[Gpu, ...]:
    gpus: list[Gpu] = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"id", "device"}:
            raise SectionError('gpus: each entry is {"id": ..., "device": ...}')
        gpu_id = entry["id"]
        if not isinstance(gpu_id, str) or not GPU_ID.match(gpu_id):
            raise SectionError(f"gpus: bad id {str(gpu_id)[:80]!r}")
        gpus.append(Gpu(gpu_id, _path(entry["device"], "gpus.device")))
    if len({gpu.id for gpu in gpus}) != len(gpus):
        raise SectionError("gpus: ids must be unique")
    return tuple(gpus)


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 32:
        raise SectionError("node_labels must be an object of at most 32 labels")
    for key, label in value.items():
        if not isinstance(key, str) or not LABEL_KEY.match(key):
            raise SectionError(f"node_labels: bad key {str(key)[:80]!r}")
        if not isinstance(label, str) or not LABEL_VALUE.match(label):
            raise SectionError(f"node_labels: bad value for {key}")
    return dict(value)


def _cordons(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_NODES:
        raise SectionError("cordon must be an object of node name -> reason")
    for node, reason in value.items():
        if not isinstance(node, str) or not NODE.match(node):
            raise SectionError(f"cordon: bad node name {str(node)[:80]!r}")
        if (
            not isinstance(reason, str)
            or not reason.startswith(DRAIN_PREFIX)
            or not reason.isprintable()
            or len(reason) > 200
        ):
            raise SectionError(
                f"cordon: the reason for {node} is one line starting {DRAIN_PREFIX!r}"
            )
    return dict(value)


def _removals(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_NODES:
        raise SectionError('remove must be an object of node name -> true or "force"')
    removals = {}
    for node, flag in value.items():
        if not isinstance(node, str) or not NODE.match(node) or flag not in (True, "force"):
            raise SectionError(f'remove: {str(node)[:80]!r} must map to true or "force"')
        removals[node] = "force" if flag == "force" else "drained"
    return removals

"""`AgentKubernetesFlavour`: KUBERNETES clusters that really run, on hosts managed by agents.

Everything happens through the hosts' assignments (`providers.agent_port`): the flavour
patches a `kubernetes` runtime section (schema: `clusterplane.agent.kubernetes.section`)
into the assignment of each of the cluster's hosts and reads what their agents report.

* The control-plane node's host runs the cluster's own control plane: it gets the cluster
  CA's pair (the one clusterplane issued at create) as secrets of its assignment, issues
  its components' certificates from it, and once its API server answers, the cluster's
  kubeconfig is pointed at `https://<host address>:<api_port>`: the kubeconfig of
  get-credentials authenticates there with the cluster's admin certificate.
* A GPU worker joins once the API server is up, with its own node pair (CN
  `system:node:<node>`, O `system:nodes`; signed here, kept sealed as a secret of the
  cluster, never the CA key) and its GPUs from its agent's inventory; done once the
  control plane reports its Node Ready. Each worker's pods get the /24 of `pod_network`
  that its address picks; every host routes the other workers' pod subnets.
* Drains are the control plane's `cordon` map (reason `clusterplane: ...`): cordon, then
  evictions through the Eviction API (PodDisruptionBudgets hold). A node leaving the
  cluster is cordoned, drained and deleted (`remove`), by force once the drain deadline
  passed. Only nodes clusterplane cordoned are ever uncordoned.
* Health's second signal is the control plane's `node_conditions` (Ready and Lease).

Like every driver it keeps no state: the port answers everything.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from datetime import datetime
from typing import Any

from clusterplane.agent.kubernetes.pki import issue, node_user
from clusterplane.domain.enums import NodeRole
from clusterplane.errors import PermanentProviderError
from clusterplane.providers import drain_reasons
from clusterplane.providers.agent_port import HostAssignments, Observation, Peer
from clusterplane.providers.drain_reasons import PREFIX
from clusterplane.providers.models import (
    ClusterConfigSpec,
    ClusterStepSpec,
    DrainProgress,
    DrainSpec,
    DriverState,
    InstanceSpec,
    Progress,
)
from clusterplane.settings import KubernetesSettings

SECTION = "kubernetes"
RESULT = f"runtime:{SECTION}"
CA_CERT = "kubernetes-ca.crt"
CA_KEY = "kubernetes-ca.key"
NODE_CERT = "kubernetes-node.crt"
NODE_KEY = "kubernetes-node.key"
CONTROL_PLANE = NodeRole.CONTROL_PLANE.value
WORKER = NodeRole.GPU_WORKER.value
OIDC_KEYS = (
    "issuer_url", "client_id", "username_claim", "username_prefix", "group_claim",
    "group_prefix", "ca_cert",
)  # fmt: skip


def cluster_name(cluster_id: str) -> str:
    """The cluster's name inside Kubernetes objects (a DNS label)."""
    name = re.sub(r"[^a-z0-9-]", "-", cluster_id.lower()).strip("-")[:63].strip("-")
    return name or "cluster"


def _oidc(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    return {key: config[key] for key in OIDC_KEYS if config.get(key) not in (None, "")}


def _gpus(peer: Peer) -> list[dict[str, str]]:
    """The device plugin's devices: ids are the device files' indexes (nvidia3 -> "3"),
    which NVIDIA's container runtime reads in NVIDIA_VISIBLE_DEVICES."""
    gpus = []
    for position, device in enumerate(peer.gpu_devices):
        digits = re.search(r"(\d+)$", device)
        gpus.append({"id": digits.group(1) if digits else str(position), "device": device})
    return gpus


class AgentKubernetesFlavour:
    name = "kubernetes"

    def __init__(self, port: HostAssignments, settings: KubernetesSettings):
        self.port = port
        self.settings = settings

    # -- the sections ------------------------------------------------------------------

    def pod_cidr(self, address: str) -> str:
        """The /24 of `pod_network` a worker's pods live in, picked by its address."""
        try:
            network = ipaddress.IPv4Network(self.settings.pod_network)
            subnets = list(network.subnets(new_prefix=24))
            return str(subnets[int(ipaddress.IPv4Address(address)) % len(subnets)])
        except ValueError as exc:
            raise PermanentProviderError(f"kubernetes.pod_network: {exc}") from exc

    def _pod_routes(self, peers: list[Peer]) -> dict[str, str]:
        return {self.pod_cidr(p.address): p.address for p in peers if p.role == WORKER}

    def _common(self, cluster_id: str, me: Peer, peers: list[Peer]) -> dict[str, Any]:
        section: dict[str, Any] = {
            "cluster": cluster_name(cluster_id),
            "address": me.address,
            "ca_cert_secret": CA_CERT,
            "pod_routes": self._pod_routes(peers),
            "node_grace_seconds": self.settings.node_grace_seconds,
        }
        if self.settings.version:
            section["version"] = self.settings.version
        return section

    def _control_section(self, spec: InstanceSpec, me: Peer, peers: list[Peer]) -> dict[str, Any]:
        s = self.settings
        return {
            **self._common(spec.cluster_id, me, peers),
            "role": "control_plane",
            "ca_key_secret": CA_KEY,
            "api_port": s.api_port,
            "service_cidr": s.service_network,
            "oidc": _oidc(spec.oidc_config),
        }

    def _worker_section(
        self, spec: InstanceSpec, me: Peer, control: Peer, peers: list[Peer]
    ) -> dict[str, Any]:
        s = self.settings
        return {
            **self._common(spec.cluster_id, me, peers),
            "role": "worker",
            "api_server": self.api_server(control),
            "node_name": me.node_name,
            "node_cert_secret": NODE_CERT,
            "node_key_secret": NODE_KEY,
            "pod_cidr": self.pod_cidr(me.address),
            "pod_reach": [f"{control.address}/32"],
            "gpus": _gpus(me),
            "node_status_seconds": s.node_status_seconds,
            "sandbox_image": s.sandbox_image,
            "images": list(s.images),
        }

    def api_server(self, control: Peer) -> str:
        return f"https://{control.address}:{self.settings.api_port}"

    def _node_pair(self, cluster_id: str, node: str) -> tuple[str, str]:
        """The worker's client pair, issued once per CA and kept sealed with the cluster."""
        ca_cert, ca_key = self.port.cluster_ca(cluster_id)
        ca_id = hashlib.sha256(ca_cert.encode()).hexdigest()[:12]

        def make() -> str:
            pair = issue(ca_cert, ca_key, node_user(node), groups=("system:nodes",))
            return json.dumps([pair.cert_pem, pair.key_pem])

        stored = self.port.cluster_secret(cluster_id, f"k8s-node:{node}:{ca_id}", make)
        cert, key = json.loads(stored)
        return str(cert), str(key)

    def _patch(
        self,
        peer: Peer,
        cluster_id: str,
        patch: dict[str, Any],
        secrets: dict[str, str] | None = None,
    ) -> int:
        generation = self.port.patch_runtime(peer.host_id, cluster_id, SECTION, patch, secrets)
        if generation is None:
            raise PermanentProviderError(f"host of {peer.node_name} no longer serves the cluster")
        return generation

    # -- bring-up ----------------------------------------------------------------------

    def start_step(self, spec: ClusterStepSpec, now: datetime) -> Progress:
        """The network, volume and driver steps are the hosts' (their agents report them);
        test steps run through the host driver's checks. Nothing is left for Kubernetes."""
        return Progress(True, {"step": spec.step.value})

    def poll_step(self, spec: ClusterStepSpec, state: DriverState, now: datetime) -> Progress:
        return Progress(True, state)

    def join_node(self, spec: InstanceSpec, now: datetime) -> Progress:
        peers = self.port.peers(spec.cluster_id)
        me = next((p for p in peers if p.node_name == spec.node_name), None)
        if me is None:
            raise PermanentProviderError(f"node {spec.node_name} has no host serving it")
        control = _control(peers)
        if control is None:
            raise PermanentProviderError(f"cluster {spec.cluster_id} has no control-plane host")
        if me.role != WORKER:
            return self._join_control_plane(spec, me, peers)
        if not _ready(self.port.observe(control.host_id), 0, {}).done:
            return Progress(False, {}, message="waiting for the cluster's API server")
        routes = {"pod_routes": self._pod_routes(peers)}
        for peer in peers:
            if peer is not me:
                self._patch(peer, spec.cluster_id, routes)
        cert, key = self._node_pair(spec.cluster_id, me.node_name)
        ca_cert = self.port.cluster_ca(spec.cluster_id)[0]
        secrets = {CA_CERT: ca_cert, NODE_CERT: cert, NODE_KEY: key}
        section = self._worker_section(spec, me, control, peers)
        generation = self._patch(me, spec.cluster_id, section, secrets)
        progress = _ready(self.port.observe(me.host_id), generation, {"generation": generation})
        if not progress.done:
            return progress
        node = (_nodes(self.port.observe(control.host_id)) or {}).get(me.node_name)
        if node is None or not node.get("ready"):
            return Progress(False, progress.state, message=f"node {me.node_name} not Ready yet")
        return progress

    def _join_control_plane(self, spec: InstanceSpec, me: Peer, peers: list[Peer]) -> Progress:
        ca_cert, ca_key = self.port.cluster_ca(spec.cluster_id)
        section = self._control_section(spec, me, peers)
        generation = self._patch(me, spec.cluster_id, section, {CA_CERT: ca_cert, CA_KEY: ca_key})
        progress = _ready(self.port.observe(me.host_id), generation, {"generation": generation})
        if progress.done:
            self.port.set_api_server(spec.cluster_id, self.api_server(me))
        return progress

    def remove_node(self, spec: InstanceSpec, state: DriverState, now: datetime) -> Progress:
        """Cordon and drain the node through the Eviction API, then delete it (by force
        once the drain deadline passed); its pod subnet leaves every host's routes."""
        if spec.role != NodeRole.GPU_WORKER:
            return Progress(True, state)
        peers = self.port.peers(spec.cluster_id)
        control = _control(peers)
        if control is None:
            return Progress(True, state, message="no control plane: nothing to remove from")
        name = spec.node_name
        started = _started(state.get("drain_started"), now)
        late = (now - started).total_seconds() > self.settings.drain_deadline_seconds
        leave = {
            "cordon": {name: f"{PREFIX} leaving the cluster"},
            "remove": {name: "force" if late else True},
        }
        self._patch(control, spec.cluster_id, leave)
        mine = {**state, "drain_started": started.isoformat()}
        view = _nodes(self.port.observe(control.host_id))
        if view is None or name in view:
            drain = (_drains(self.port.observe(control.host_id)) or {}).get(name, {})
            left = drain.get("pods_left", "?")
            return Progress(False, mine, message=f"draining {name}: {left} pods left")
        me = next((p for p in peers if p.node_name == name), None)
        routes = {self.pod_cidr(me.address): None} if me is not None else {}
        done = {"cordon": {name: None}, "remove": {name: None}, "pod_routes": routes}
        self._patch(control, spec.cluster_id, done)
        for peer in peers:
            if peer.role == WORKER and peer.node_name != name and routes:
                self._patch(peer, spec.cluster_id, {"pod_routes": routes})
        return Progress(True, mine)

    def apply_config(self, spec: ClusterConfigSpec, now: datetime) -> Progress:
        """The cluster's current CA on its control plane (which issues its certificates
        again and restarts), and the CA and a node pair it signed on every registered
        worker (whose kubelet restarts; pods keep running): a credential rotation reaches
        the running cluster. Done once they all converged to it."""
        ignored = sorted(a["name"] for a in spec.add_ons)
        note = f"add-ons not run on agent hosts: {', '.join(ignored)}" if ignored else ""
        peers = self.port.peers(spec.cluster_id)
        control = _control(peers)
        if control is None:
            return Progress(True, {}, message=note)
        cluster_id = spec.cluster_id
        ca_cert, ca_key = self.port.cluster_ca(cluster_id)
        published = {
            control.host_id: self._patch(
                control, cluster_id, {}, {CA_CERT: ca_cert, CA_KEY: ca_key}
            )
        }
        nodes = _nodes(self.port.observe(control.host_id)) or {}
        for peer in peers:
            if peer.role == WORKER and peer.node_name in nodes:
                cert, key = self._node_pair(cluster_id, peer.node_name)
                pair = {CA_CERT: ca_cert, NODE_CERT: cert, NODE_KEY: key}
                published[peer.host_id] = self._patch(peer, cluster_id, {}, pair)
        waiting = [
            host_id
            for host_id, generation in published.items()
            if not _ready(self.port.observe(host_id), generation, {}).done
        ]
        if waiting:
            return Progress(False, {}, message=f"{len(waiting)} hosts taking the cluster's CA")
        return Progress(True, {}, message=note)

    # -- drains ------------------------------------------------------------------------

    def drain(self, spec: DrainSpec, state: DriverState | None, now: datetime) -> DrainProgress:
        control = self._control_of(spec.cluster_id)
        reason = drain_reasons.reason_for(spec)
        self._patch(control, spec.cluster_id, {"cordon": {n: reason for n in spec.node_names}})
        return self.is_drained(spec, {"reason": reason}, now)

    def undrain(self, spec: DrainSpec, state: DriverState, now: datetime) -> DrainProgress:
        control = self._control_of(spec.cluster_id)
        progress = self.is_drained(spec, state, now)
        if progress.drained_by not in (None, spec.drained_by):
            message = f"cordoned by {progress.drained_by}; left cordoned"
            return DrainProgress(False, state, message=message, drained_by=progress.drained_by)
        self._patch(control, spec.cluster_id, {"cordon": {n: None for n in spec.node_names}})
        view = _nodes(self.port.observe(control.host_id)) or {}
        still = [n for n in spec.node_names if view.get(n, {}).get("cordoned_by_clusterplane")]
        return DrainProgress(not still, state, message=f"still cordoned: {still}" if still else "")

    def is_drained(self, spec: DrainSpec, state: DriverState, now: datetime) -> DrainProgress:
        """Drained once the nodes are cordoned and nothing evictable runs on them;
        `drained_by` from clusterplane's reason (someone else's cordon: theirs)."""
        seen = self.port.observe(self._control_of(spec.cluster_id).host_id)
        view, drains = _nodes(seen), _drains(seen) or {}
        if view is None:
            return DrainProgress(False, state, message="no word from the control plane yet")
        done, drained_by = True, None
        for name in spec.node_names:
            node = view.get(name)
            if node is None:
                continue  # not (or no longer) in the cluster: nothing runs there
            if not node.get("unschedulable"):
                return DrainProgress(False, state, message=f"{name} is not cordoned yet")
            drained_by = _drained_by(node)
            done = done and (bool(drains.get(name, {}).get("drained")) or not node.get("ready"))
        return DrainProgress(done, state, drained_by=drained_by)

    def _control_of(self, cluster_id: str) -> Peer:
        control = _control(self.port.peers(cluster_id))
        if control is None:
            raise PermanentProviderError(f"cluster {cluster_id} has no control-plane host")
        return control


def _drained_by(node: dict[str, Any]) -> str:
    """Who cordoned a node, as the control plane reports it (`drain_reasons.reason_for`)."""
    if not node.get("cordoned_by_clusterplane"):
        return "kubernetes: cordoned by someone else"
    return drain_reasons.owner(str(node.get("cordon_reason", "")))


def _started(value: object, now: datetime) -> datetime:
    """When the node's drain began (the state this flavour keeps); now when unreadable."""
    try:
        return datetime.fromisoformat(str(value)) if value else now
    except ValueError:
        return now


def _control(peers: list[Peer]) -> Peer | None:
    return next((p for p in peers if p.role == CONTROL_PLANE), None)


def _ready(seen: Observation | None, generation: int, state: DriverState) -> Progress:
    """Done once the host applied `generation` and its section reports ready."""
    if seen is None:
        raise PermanentProviderError("the host has no node agent")
    result = seen.sections.get(RESULT)
    if seen.generation_applied < generation or result is None:
        return Progress(False, state, message="the host's agent has not applied it yet")
    if not result.ok:
        return Progress(False, state, failed=True, message=f"kubernetes: {result.message}")
    phase = result.details.get("phase")
    done = phase == "ready"
    return Progress(done, state, message="" if done else f"kubernetes {phase}")


def _details(seen: Observation | None, key: str) -> dict[str, dict[str, Any]] | None:
    if seen is None:
        return None
    result = seen.sections.get(RESULT)
    value = result.details.get(key) if result is not None else None
    return value if isinstance(value, dict) else None


def _nodes(seen: Observation | None) -> dict[str, dict[str, Any]] | None:
    """Each Node as the control plane's agent last reported it."""
    return _details(seen, "nodes")


def _drains(seen: Observation | None) -> dict[str, dict[str, Any]] | None:
    return _details(seen, "drains")

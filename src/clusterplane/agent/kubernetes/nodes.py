"""The cluster's nodes as its control plane sees them, and clusterplane's cordons and drains.

`node_views(api, resource)` reads every Node (its Ready condition, whether it is
unschedulable and whether clusterplane cordoned it, its allocatable GPUs) and its Lease.
`condition(view, grace)` is the flavour-neutral view the control plane reads as health's
second signal: ready when the Ready condition is True and the Lease (when there is one
yet) was renewed within the grace period. `apply(api, section, views, messages)` makes
the cluster match the section: a node in `cordon` is cordoned (annotated with
clusterplane's reason, unless someone else had cordoned it already) and drained through
the Eviction API, so PodDisruptionBudgets hold, DaemonSet and mirror pods stay; a node
clusterplane cordoned that left `cordon` is uncordoned (never one cordoned by someone
else); a node in `remove` is deleted once drained, or at once when not ready, or when the
map says "force" (the deadline passed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clusterplane.agent.kubernetes.api import CORDONED_BY, ApiError, KubeApi
from clusterplane.agent.kubernetes.section import KubernetesSection


@dataclass(frozen=True)
class NodeView:
    name: str
    ready: bool
    reason: str
    lease_age: float | None  # seconds since the node's Lease was renewed (None: no Lease)
    unschedulable: bool
    cordoned_by: str  # clusterplane's reason; "" when clusterplane did not cordon it
    gpus: int
    address: str

    def report(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reason": self.reason,
            "lease_age_seconds": None if self.lease_age is None else round(self.lease_age, 1),
            "unschedulable": self.unschedulable,
            "cordoned_by_clusterplane": bool(self.cordoned_by),
            "cordon_reason": self.cordoned_by,
            "gpus": self.gpus,
            "address": self.address,
        }


def node_views(api: KubeApi, resource: str, now: datetime | None = None) -> dict[str, NodeView]:
    moment = now or datetime.now(UTC)
    leases = api.leases()
    views = {}
    for node in api.nodes():
        name = node["metadata"]["name"]
        ready: dict[str, Any] = next(
            (c for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"),
            {},
        )
        renewed = _time(leases.get(name, ""))
        annotations = node["metadata"].get("annotations") or {}
        addresses = node.get("status", {}).get("addresses", [])
        views[name] = NodeView(
            name=name,
            ready=ready.get("status") == "True",
            reason=f"{ready.get('reason', 'NoReadyCondition')}: {ready.get('message', '')}"[:200],
            lease_age=None if renewed is None else (moment - renewed).total_seconds(),
            unschedulable=bool(node.get("spec", {}).get("unschedulable")),
            cordoned_by=str(annotations.get(CORDONED_BY, "")),
            gpus=int(node.get("status", {}).get("allocatable", {}).get(resource, "0")),
            address=next((a["address"] for a in addresses if a["type"] == "InternalIP"), ""),
        )
    return views


def condition(view: NodeView, grace_seconds: float) -> dict[str, Any]:
    if not view.ready:
        return {"ready": False, "reason": view.reason}
    if view.lease_age is not None and view.lease_age > grace_seconds:
        return {"ready": False, "reason": f"kubelet silent (Lease {view.lease_age:.0f} s old)"}
    return {"ready": True, "reason": ""}  # a new node's first Lease comes a little later


def apply(
    api: KubeApi, section: KubernetesSection, views: dict[str, NodeView], messages: list[str]
) -> dict[str, dict[str, Any]]:
    """Cordon, drain, uncordon and delete as the section says; each cordoned node's drain."""
    drains: dict[str, dict[str, Any]] = {}
    for name, view in sorted(views.items()):
        reason = section.cordon.get(name)
        if reason is not None:
            if not view.unschedulable:
                api.set_unschedulable(name, reason)
                messages.append(f"cordoned {name}")
            drains[name] = _drain(api, name)
        elif view.cordoned_by:
            api.set_unschedulable(name, None)
            messages.append(f"uncordoned {name}")
        removal = section.remove.get(name)
        drained = drains.get(name, {}).get("drained", False)
        if removal is not None and (drained or not view.ready or removal == "force"):
            api.delete_node(name)
            messages.append(f"deleted node {name}")
    return drains


def _drain(api: KubeApi, node: str) -> dict[str, Any]:
    """Evict what still runs on `node`; how many pods are left and which wait for a PDB."""
    left: list[str] = []
    blocked: list[str] = []
    for pod in api.pods_on(node):
        if not _evictable(pod):
            continue
        meta = pod["metadata"]
        name = f"{meta['namespace']}/{meta['name']}"
        left.append(name)
        if meta.get("deletionTimestamp"):
            continue  # already going
        try:
            if not api.evict(meta["namespace"], meta["name"]):
                blocked.append(name)
        except ApiError as exc:
            blocked.append(f"{name} ({exc})"[:200])
    return {"drained": not left, "pods_left": len(left), "blocked": blocked[:20]}


def _evictable(pod: dict[str, Any]) -> bool:
    meta = pod["metadata"]
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return False
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return False
    return not any(owner.get("kind") == "DaemonSet" for owner in meta.get("ownerReferences", []))


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None

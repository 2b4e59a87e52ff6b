"""A cluster and its parts as the wire shows them, field names exactly as the official SDK
reads them: the document `services/clusters/cluster_documents.py` stores and serves, and
the remediation and volume objects other responses share.

Documents are plain dicts encoded once by orjson (`encode`), far cheaper than pydantic
models on hot list paths; tests check them against the response models in `api/schemas`
and the official SDK's own types. A cluster's `kube_config` is not part of its document
(it is sealed at rest): `with_kube_config` adds it to an encoded document at read time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson

from clusterplane.db.rows import HealthEventRow, RemediationRow, VolumeRow
from clusterplane.domain.enums import AddOnType, ClusterPhase
from clusterplane.services.access.sealing import SealError, SecretBox
from clusterplane.services.clusters import addons
from clusterplane.services.clusters.cluster_secrets import kube_config_text
from clusterplane.services.clusters.cluster_views import (
    ClusterDetail,
    NodeDetail,
    RemediationView,
    Transition,
    VolumeView,
)

log = logging.getLogger(__name__)
_UNREADABLE_LOGGED: set[str] = set()

KUBECONFIG_FROM = frozenset(
    {ClusterPhase.QUEUED, ClusterPhase.SCHEDULED, ClusterPhase.WAITING_FOR_CONTROL_PLANE_NODES}
)
# Naive datetimes are UTC here (phase histories are read without conversion).
JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS
_KUBE_CONFIG_KEY = b',"kube_config":'


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=JSON_OPTIONS)


def with_kube_config(document: bytes, kube_config: str) -> bytes:
    """An encoded document (a JSON object) with its `kube_config` member added last."""
    return document[:-1] + _KUBE_CONFIG_KEY + orjson.dumps(kube_config) + b"}"


def linked_alert(event: HealthEventRow) -> dict[str, Any]:
    """A health event as the spec's `LinkedAlert` (§3.6)."""
    annotation: dict[str, Any] = {
        "title": event.title,
        "description": event.message or event.title,
        "summary_line": f"{event.alert_name} on {event.host_name}",
    }
    if event.kind == "xid" and event.code is not None:
        annotation["xid"] = {
            "events": [{"xid_code": str(event.code), "mnemonic": event.title, "count": 1}]
        }
    return {
        "passive_health_check_alert_id": event.id,
        "alert_name": event.alert_name,
        "severity": event.severity,
        "started_at": event.observed_at,
        "target_vm": event.host_name,
        "cluster_id": event.cluster_id or "",
        "annotations": {"summary": annotation["summary_line"], "description": event.title},
        "annotation": annotation,
        "resolved_at": event.resolved_at,
        "instance_id": event.instance_id,
        "node_remediation_intent_id": event.remediation_id,
    }


def remediation(
    row: RemediationRow | RemediationView, alerts: Sequence[HealthEventRow] = ()
) -> dict[str, Any]:
    return {
        "id": row.id,
        "cluster_id": row.cluster_id,
        "instance_id": row.instance_id,
        "mode": row.mode,
        "state": row.state,
        "trigger": row.trigger,
        "instance_name": row.instance_name,
        "reason": row.reason,
        "requested_by": row.requested_by,
        "reviewed_by": row.reviewed_by,
        "review_time": row.review_time,
        "review_comment": row.review_comment,
        "create_time": row.create_time,
        "start_time": row.start_time,
        "end_time": row.end_time,
        "update_time": row.update_time,
        "error_message": row.error_message,
        "active_health_check_run_id": row.active_health_check_run_id,
        "passive_health_check_event_id": row.passive_health_check_event_id,
        "linked_alerts": [linked_alert(e) for e in alerts],
    }


def volume(row: VolumeRow | VolumeView) -> dict[str, Any]:
    return {
        "volume_id": row.id,
        "volume_name": row.name,
        "size_tib": row.size_tib,
        "status": row.status,
    }


def _transitions(items: list[Transition]) -> list[dict[str, Any]]:
    return [{"phase": phase, "transition_time": at} for phase, at in items]


def control_plane_node(view: NodeDetail) -> dict[str, Any]:
    node = view.row
    return {
        "node_id": node.node_name,
        "node_name": node.node_name,
        "host_name": node.host_name,
        "status": node.status,
        "num_cpu_cores": node.num_cpu_cores,
        "memory_gib": node.memory_gib,
        "network": node.networks[0] if node.networks else "",
        "phase_transitions": _transitions(view.transitions),
        "public_ipv4": node.public_ipv4,
    }


def worker_node(view: NodeDetail) -> dict[str, Any]:
    node = view.row  # the node's columns and its host's facts (None without a host)
    latest = view.latest_remediation
    return {
        "node_id": node.node_name,
        "node_name": node.node_name,
        "host_name": node.host_name,
        "status": node.status,
        "num_cpu_cores": node.num_cpu_cores,
        "num_gpus": node.num_gpus,
        "memory_gib": node.memory_gib,
        "networks": list(node.networks),
        "phase_transitions": _transitions(view.transitions),
        "instance_id": node.instance_id,
        "latest_remediation": remediation(latest) if latest is not None else None,
        "slurm_worker_hostname": node.slurm_worker_hostname,
        "public_ipv4": node.public_ipv4,
        "auto_remediation_enabled": node.auto_remediation_enabled,
        "marked_for_deletion": node.marked_for_deletion,
        "deleted_at": node.deleted_at,
        "ephemeral_storage": node.ephemeral_storage,
        "ib_hca_count": node.ib_hca_count,
        "ib_hca_type": node.ib_hca_type,
        "nvswitch_count": node.nvswitch_count,
        "nvswitch_type": node.nvswitch_type,
    }


def _add_on(item: dict[str, Any], status: str) -> dict[str, Any]:
    """`state` names the add-on once the driver applied its current config, and is `{}`
    while that is pending (the spec keeps each entry an empty object)."""
    applied = status == "applied"
    state: dict[str, dict[str, Any]] = {
        key: {} for key in item["config"] if applied and key in AddOnType.__members__.values()
    }
    return {
        "name": item["name"],
        "add_on_type": item["add_on_type"],
        "config": item["config"],
        "state": state,
    }


def kube_config_of(
    cluster_id: str, phase: str, control_plane_ready: bool, sealed: str, box: SecretBox
) -> str:
    """Credentials are handed out once the control plane answers, not before.

    A kubeconfig no configured key opens (sealed by a replica with a newer key, or
    damaged) is left out as `""`, the spec's "not available", so one such cluster does
    not break a whole list; the log says which and why.
    """
    if not control_plane_ready or phase in KUBECONFIG_FROM:
        return ""
    try:
        return kube_config_text(cluster_id, sealed, box)
    except SealError as exc:
        if cluster_id not in _UNREADABLE_LOGGED and len(_UNREADABLE_LOGGED) < 10_000:
            _UNREADABLE_LOGGED.add(cluster_id)  # once per cluster and process, not per list
            log.warning("cluster %s is shown without its kube_config: %s", cluster_id, exc.message)
        return ""


def document(detail: ClusterDetail) -> dict[str, Any]:
    """A cluster's response without its `kube_config` (`with_kube_config` adds it)."""
    row = detail.row
    preemptible_live = sum(v.row.num_gpus for v in detail.workers if v.row.preemptible)
    states = addons.add_on_states(row.add_ons, row.applied_config)
    return {
        "cluster_id": row.id,
        "cluster_name": row.name,
        "cluster_type": row.cluster_type,
        "region": row.region,
        "gpu_type": row.gpu_type,
        "billing_type": row.billing_type,
        "status": row.status,
        "num_gpus": row.num_gpus,
        "num_reserved_gpus": row.num_reserved_gpus,
        "num_capacity_pool_gpus": row.num_capacity_pool_gpus,
        "desired_preemptible_gpus": row.desired_preemptible_gpus,
        "allocated_preemptible_gpus": preemptible_live,
        "num_cpu_workers": row.num_cpu_workers,
        "cuda_version": row.cuda_version,
        "nvidia_driver_version": row.nvidia_driver_version,
        "project_id": row.project_id,
        "volumes": [volume(v) for v in detail.volumes],
        "control_plane_nodes": [control_plane_node(v) for v in detail.control_plane],
        "gpu_worker_nodes": [worker_node(v) for v in detail.workers],
        "phase_transitions": _transitions(detail.transitions),
        "add_ons": [_add_on(a, states[a["name"]]) for a in addons.enabled(row.add_ons)],
        "capacity_pool_id": row.capacity_pool_id,
        "cluster_config": row.cluster_config,
        "oidc_config": row.oidc_config,
        "control_plane_ready": row.control_plane_ready,
        "created_at": row.created_at,
        "first_ready_at": row.first_ready_at,
        "duration_hours": row.duration_hours,
        "reservation_start_time": row.reservation_start_time,
        "reservation_end_time": row.reservation_end_time,
        "install_traefik": row.install_traefik,
        "slurm_shm_size_gib": row.slurm_shm_size_gib,
        "deleted_gpu_worker_nodes": [worker_node(v) for v in detail.deleted_workers],
        "node_lifecycle_events": [
            {
                "node_id": e.node_name,
                "reason": e.reason,
                "message": e.message,
                "timestamp": e.timestamp,
            }
            for e in detail.lifecycle_events
        ],
        "nvidia_driver_version_id": row.nvidia_driver_version_id,
        "os_image": row.os_image,
        "machine_cluster_id": None,
        "is_in_substrate": False,
        "ums_org_id": row.organization_id,
        "ums_project_id": row.project_id,
    }

"""Cluster add-ons and `cluster_config`: cluster-type rules and update merge rules.

Stored on the cluster as a list of `{name, add_on_type, config}`; the wire shows only the
enabled ones. An update entry names an existing add-on and its config is merged in; naming
a known add-on type that the cluster does not have yet adds it (that is what
`together clusters update --headlamp` sends).

Cluster types: `slurm_web` is for SLURM clusters only; the Kubernetes dashboard and the
ingress add-on (and `kubernetes_dashboard_enabled`) for KUBERNETES clusters only; Headlamp
runs on both (a Slurm cluster runs on Kubernetes underneath). `slurm_startup_scripts` are
for SLURM clusters only, each up to 64 KiB (the wire schema), all together up to
`MAX_STARTUP_SCRIPTS_BYTES`.

`cluster_config` updates replace the keys they give; the sub-objects (`ingress`,
`observability`, `slurm_startup_scripts`) are merged key by key, so sending one script
keeps the others.
"""

from __future__ import annotations

import copy
from typing import Any

from clusterplane.domain.enums import AddOnType, ClusterType
from clusterplane.errors import InvalidRequest

SLURM_ONLY = {AddOnType.SLURM_WEB}
KUBERNETES_ONLY = {AddOnType.DASHBOARD, AddOnType.INGRESS}
MAX_STARTUP_SCRIPTS_BYTES = 256 * 1024


def _check_type(add_on_type: str, cluster_type: ClusterType, param: str) -> AddOnType:
    try:
        kind = AddOnType(add_on_type)
    except ValueError:
        known = ", ".join(t.value for t in AddOnType)
        raise InvalidRequest(
            f"unknown add-on type '{add_on_type}'; known: {known}", param=param
        ) from None
    if kind in SLURM_ONLY and cluster_type != ClusterType.SLURM:
        raise InvalidRequest(f"add-on '{kind}' is available on SLURM clusters only", param=param)
    if kind in KUBERNETES_ONLY and cluster_type != ClusterType.KUBERNETES:
        raise InvalidRequest(
            f"add-on '{kind}' is available on KUBERNETES clusters only", param=param
        )
    return kind


def _check_config_sections(kind: AddOnType, config: dict[str, Any], param: str) -> None:
    for key in config:
        if key != kind.value:
            raise InvalidRequest(
                f"the config of a '{kind}' add-on may only hold its own '{kind}' section",
                param=f"{param}.{key}",
            )


def _default_config(kind: AddOnType) -> dict[str, Any]:
    return {kind.value: {"enabled": True}}


def validate_new(items: list[dict[str, Any]], cluster_type: ClusterType) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        param = f"add_ons.{index}"
        kind = _check_type(str(item["add_on_type"]), cluster_type, f"{param}.add_on_type")
        name = str(item["name"])
        if name in names:
            raise InvalidRequest(f"duplicate add-on name '{name}'", param=f"{param}.name")
        names.add(name)
        config = item.get("config") or _default_config(kind)
        _check_config_sections(kind, config, f"{param}.config")
        result.append({"name": name, "add_on_type": kind.value, "config": config})
    return result


def merge_updates(
    current: list[dict[str, Any]], updates: list[dict[str, Any]], cluster_type: ClusterType
) -> list[dict[str, Any]]:
    merged = copy.deepcopy(current)
    by_name = {a["name"]: a for a in merged}
    for index, update in enumerate(updates):
        name = str(update["name"])
        config = update.get("config") or {}
        existing = by_name.get(name)
        if existing is None:
            if name not in {t.value for t in AddOnType}:
                raise InvalidRequest(
                    f"the cluster has no add-on named '{name}'", param=f"add_ons.{index}.name"
                )
            kind = _check_type(name, cluster_type, f"add_ons.{index}.name")
            existing = {"name": name, "add_on_type": kind.value, "config": {}}
            merged.append(existing)
            by_name[name] = existing
        _check_config_sections(
            AddOnType(existing["add_on_type"]), config, f"add_ons.{index}.config"
        )
        for key, value in config.items():
            section = dict(existing["config"].get(key) or {})
            section.update(value or {})
            existing["config"][key] = section
    return merged


def enabled(add_ons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The add-ons the wire shows: those whose own config section says enabled."""
    shown = []
    for item in add_ons:
        section = (item.get("config") or {}).get(item["add_on_type"]) or {}
        if section.get("enabled", False):
            shown.append(item)
    return shown


def desired_config(
    add_ons: list[dict[str, Any]],
    cluster_config: dict[str, Any] | None,
    credentials: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the driver should have applied to a running cluster: the enabled add-ons, the
    cluster_config and the credentials' issue time (a rotation reaches the running
    cluster's control plane and nodes), compared with `ClusterRow.applied_config` to see
    what is pending."""
    return {
        "add_ons": enabled(add_ons),
        "cluster_config": cluster_config or {},
        "credentials_issued_at": (credentials or {}).get("issued_at"),
    }


def add_on_states(add_ons: list[dict[str, Any]], applied: dict[str, Any] | None) -> dict[str, str]:
    """Per enabled add-on name: ``applied`` when the driver applied this very config,
    else ``pending``."""
    done = {item["name"]: item for item in (applied or {}).get("add_ons", [])}
    return {
        item["name"]: "applied" if done.get(item["name"]) == item else "pending"
        for item in enabled(add_ons)
    }


def check_cluster_config(config: dict[str, Any] | None, cluster_type: ClusterType) -> None:
    """Refuse `cluster_config` keys that do not apply to the cluster's type."""
    if not config:
        return
    scripts = config.get("slurm_startup_scripts")
    if scripts and cluster_type != ClusterType.SLURM:
        raise InvalidRequest(
            "slurm_startup_scripts are for SLURM clusters only",
            param="cluster_config.slurm_startup_scripts",
        )
    if scripts:
        total = sum(len(str(text).encode("utf-8")) for text in scripts.values())
        if total > MAX_STARTUP_SCRIPTS_BYTES:
            raise InvalidRequest(
                f"slurm_startup_scripts add up to {total} bytes; at most "
                f"{MAX_STARTUP_SCRIPTS_BYTES} are kept",
                param="cluster_config.slurm_startup_scripts",
            )
    if config.get("kubernetes_dashboard_enabled") and cluster_type != ClusterType.KUBERNETES:
        raise InvalidRequest(
            "kubernetes_dashboard_enabled is for KUBERNETES clusters only",
            param="cluster_config.kubernetes_dashboard_enabled",
        )


def merge_cluster_config(
    current: dict[str, Any] | None, update: dict[str, Any], cluster_type: ClusterType
) -> dict[str, Any]:
    """The stored config with `update` applied (sub-objects merged key by key), checked."""
    merged = copy.deepcopy(current or {})
    for key, value in update.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    check_cluster_config(merged, cluster_type)
    return merged

"""Cluster add-ons: which exist, which cluster types take them, and update merge rules.

Stored on the cluster as a list of `{name, add_on_type, config}`; the wire shows only the
enabled ones. An update entry names an existing add-on and its config is merged in; naming
a known add-on type that the cluster does not have yet adds it (that is what
`together clusters update --headlamp` sends).
"""

from __future__ import annotations

import copy
from typing import Any

from clusterplane.domain.enums import AddOnType, ClusterType
from clusterplane.errors import InvalidRequest

SLURM_ONLY = {AddOnType.SLURM_WEB}


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
    return kind


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

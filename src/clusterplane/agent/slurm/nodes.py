"""Slurm's view of its nodes, parsed from `sinfo --json` (Slurm 22.05;
its `scontrol` has no `--json` yet, 23.02 added it).

`parse_nodes(text)` gives a `NodeView` per node: the base state (idle, allocated, mixed,
down, future, ...), whether it is draining or drained, whether it is not responding, and
the reason with who set it. Slurm's names: a node with the DRAIN flag is "draining" while
jobs run on it and "drained" once idle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeView:
    name: str
    state: str  # Slurm's base state, lower case: idle, allocated, mixed, down, future, ...
    flags: frozenset[str]  # DRAIN, NOT_RESPONDING, DYNAMIC_NORM, ... upper case
    reason: str
    reason_set_by: str
    address: str
    gres: str
    gres_used: str

    @property
    def drain(self) -> bool:
        return "DRAIN" in self.flags

    @property
    def not_responding(self) -> bool:
        return "NOT_RESPONDING" in self.flags

    @property
    def summary(self) -> str:
        """One word: drained, draining, not_responding, down, idle, alloc, mixed, ..."""
        if self.not_responding:
            return "not_responding"
        if self.drain:
            return "drained" if self.state in ("idle", "down") else "draining"
        return {"allocated": "alloc"}.get(self.state, self.state)

    def drained_by_someone_else(self, prefix: str) -> bool:
        return self.drain and not self.reason.startswith(prefix)


def parse_nodes(text: str) -> dict[str, NodeView]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"sinfo answered no JSON: {text[:200]!r}") from exc
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        raise ValueError("sinfo's JSON has no node list")
    views = [_view(node) for node in nodes if isinstance(node, dict)]
    return {view.name: view for view in views}


def _view(node: dict[str, Any]) -> NodeView:
    return NodeView(
        name=str(node.get("name", "")),
        state=str(node.get("state", "unknown")).lower(),
        flags=frozenset(str(flag).upper() for flag in node.get("state_flags") or ()),
        reason=str(node.get("reason") or ""),
        reason_set_by=str(node.get("reason_set_by_user") or ""),
        address=str(node.get("address") or ""),
        gres=str(node.get("gres") or ""),
        gres_used=str(node.get("gres_used") or ""),
    )

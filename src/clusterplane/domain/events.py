"""The kinds of event the audit trail holds, and the patterns that select them.

An event's kind is `<object type>.<what happened>` (`cluster.phase`, `host.quarantined`):
the object it is about and the change. `KINDS` is the whole catalogue; a test checks that
every event the engine records is in it, so a filter or a webhook subscription naming a
kind that does not exist is refused instead of silently matching nothing.

A pattern is a kind, `<object type>.*` (every kind of that object), or `*` (everything).
"""

from __future__ import annotations

from collections.abc import Iterable

KINDS: dict[str, frozenset[str]] = {
    "cluster": frozenset(
        {
            "created",
            "updated",
            "scaled",
            "phase",
            "deleted",
            "step_failed",
            "config_failed",
            "config_applied",
            "node_failed",
            "reservation_ended",
            "booked_after_reservations",
            "displaced_by_booking",
            "preemptible_fulfilled",
            "waiting_for_hosts",
            "ssh_certificate",
            "acceptance_replaced",
            "remediation_stopped",
            "remediation_resumed",
        }
    ),
    "node": frozenset({"cordoned", "uncordoned"}),
    "volume": frozenset({"created", "resized", "status", "failed", "deleted"}),
    "remediation": frozenset(
        {
            "created",
            "recommended",
            "approved",
            "rejected",
            "cancelled",
            "auto_resolved",
            "escalated",
            "state",
        }
    ),
    "health_event": frozenset({"ingested", "resolved"}),
    "health_check_run": frozenset({"passed", "failed"}),
    "host": frozenset(
        {"enrolled", "inventory_changed", "agent_unknown", "agent_ready", "quarantined", "returned"}
    ),
}
ANY = "*"
MAX_PATTERN_CHARS = 64


def all_kinds() -> list[str]:
    return sorted(f"{obj}.{what}" for obj, whats in KINDS.items() for what in whats)


def kind_of(object_type: str, what: str) -> str:
    return f"{object_type}.{what}"


def check_pattern(pattern: str) -> str | None:
    """Why `pattern` selects no kind of the catalogue (None: it is a valid pattern)."""
    if pattern == ANY:
        return None
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"a kind is at most {MAX_PATTERN_CHARS} characters"
    obj, dot, what = pattern.partition(".")
    if not dot or obj not in KINDS:
        known = ", ".join(sorted(KINDS))
        return f"'{pattern}' is not '<object>.<kind>', '<object>.*' or '*' (objects: {known})"
    if what != ANY and what not in KINDS[obj]:
        return f"unknown kind '{pattern}'; {obj} kinds: {', '.join(sorted(KINDS[obj]))}"
    return None


def matches(patterns: Iterable[str], kind: str) -> bool:
    """Whether `kind` (`object.what`) is selected by any of `patterns`."""
    obj = kind.partition(".")[0]
    return any(p in (ANY, kind, f"{obj}.{ANY}") for p in patterns)


def selected(patterns: Iterable[str]) -> list[tuple[str, str | None]]:
    """(object type, kind or None for all of them) pairs the patterns select; empty for `*`."""
    pairs: list[tuple[str, str | None]] = []
    for pattern in patterns:
        if pattern == ANY:
            return []
        obj, _, what = pattern.partition(".")
        pairs.append((obj, None if what == ANY else what))
    return pairs

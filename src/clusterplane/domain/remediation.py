"""The remediation machine: review transitions and the execution steps, pure.

A PENDING remediation waits out a grace period (default 30 minutes after it was requested
or approved, as Together's default "wait for idle"), during which it can still be
cancelled. Review (API): manual requests start PENDING, automated ones PENDING_APPROVAL; approve
moves PENDING_APPROVAL -> PENDING, reject -> CANCELLED, cancel PENDING_APPROVAL|PENDING ->
CANCELLED. Execution (controller): PENDING -> QUARANTINING (cordon and drain the node) ->
QUARANTINED (drained) -> RUNNING (the mode's action: reboot, recreate, move or evict) ->
SUCCEEDED once the repaired node runs again and has passed a verification check (a node
never returns to service unchecked; for an eviction, once it is gone), or FAILED with a
reason (the mode could not be carried out, or the verification check failed). A PENDING
remediation starts only when the rails allow it (`may_start`: the fleet-wide cap on
repairs at once, and the cluster's stop rule for auto-approved ones). A terminal remediation
never changes again.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterplane.domain.enums import RemediationMode, RemediationState

S = RemediationState
M = RemediationMode

TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.AUTO_RESOLVED})
EXECUTING = frozenset({S.PENDING, S.QUARANTINING, S.QUARANTINED, S.RUNNING})
REVIEW_TRANSITIONS: dict[str, tuple[frozenset[RemediationState], RemediationState]] = {
    "approve": (frozenset({S.PENDING_APPROVAL}), S.PENDING),
    "reject": (frozenset({S.PENDING_APPROVAL}), S.CANCELLED),
    "cancel": (frozenset({S.PENDING_APPROVAL, S.PENDING}), S.CANCELLED),
}
# Modes that keep the node (and its host); the others put a new instance in its place or
# take it away.
IN_PLACE = frozenset({M.REBOOT_VM, M.HOST_POWER_CYCLE})


def review(action: str, state: RemediationState) -> RemediationState | None:
    """The state after a review `action`, or None when the current state forbids it."""
    allowed, target = REVIEW_TRANSITIONS[action]
    return target if state in allowed else None


@dataclass(frozen=True)
class ExecutionFacts:
    cluster_deleting: bool
    grace_over: bool
    node_gone: bool
    drain_done: bool
    target_running: bool
    target_gone: bool  # the repaired or replacement node was removed (a scale-down)
    old_node_gone: bool
    may_start: bool = True
    verified: bool = False  # the repaired node passed its verification check
    verification_failed: bool = False


def next_execution_state(
    state: RemediationState, mode: RemediationMode, facts: ExecutionFacts
) -> RemediationState | None:
    """Where an executing remediation goes next, or None to wait."""
    if state in TERMINAL or state == S.PENDING_APPROVAL:
        return None
    if facts.cluster_deleting or (
        facts.node_gone and state in (S.PENDING, S.QUARANTINING, S.QUARANTINED)
    ):
        return S.CANCELLED
    if state == S.PENDING:
        return S.QUARANTINING if facts.grace_over and facts.may_start else None
    if state == S.QUARANTINING:
        return S.QUARANTINED if facts.drain_done else None
    if state == S.QUARANTINED:
        return S.RUNNING
    if mode == M.EVICT_WITHOUT_REPLACEMENT:
        return S.SUCCEEDED if facts.old_node_gone else None
    if facts.target_gone:
        return S.CANCELLED
    if facts.verification_failed:
        return S.FAILED
    return S.SUCCEEDED if facts.target_running and facts.verified else None

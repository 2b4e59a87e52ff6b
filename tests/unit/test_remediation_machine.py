"""The remediation machine: every review transition, valid and invalid, and execution."""

from __future__ import annotations

import pytest

from clusterplane.domain.enums import RemediationMode, RemediationState
from clusterplane.domain.remediation import (
    TERMINAL,
    ExecutionFacts,
    next_execution_state,
    review,
)

S = RemediationState
M = RemediationMode
ALLOWED = {
    ("approve", S.PENDING_APPROVAL): S.PENDING,
    ("reject", S.PENDING_APPROVAL): S.CANCELLED,
    ("cancel", S.PENDING_APPROVAL): S.CANCELLED,
    ("cancel", S.PENDING): S.CANCELLED,
}


@pytest.mark.parametrize("action", ["approve", "reject", "cancel"])
@pytest.mark.parametrize("state", list(RemediationState))
def test_review_actions_are_allowed_exactly_from_the_spec_states(action: str, state: S):
    assert review(action, state) == ALLOWED.get((action, state))


def facts(**overrides: bool) -> ExecutionFacts:
    values = {
        "cluster_deleting": False,
        "grace_over": True,
        "node_gone": False,
        "drain_done": False,
        "target_running": False,
        "target_gone": False,
        "old_node_gone": False,
    }
    values.update(overrides)
    return ExecutionFacts(**values)


def test_execution_walks_quarantine_then_runs_then_succeeds():
    assert next_execution_state(S.PENDING, M.VM_ONLY, facts()) == S.QUARANTINING
    assert next_execution_state(S.QUARANTINING, M.VM_ONLY, facts()) is None
    assert next_execution_state(S.QUARANTINING, M.VM_ONLY, facts(drain_done=True)) == (
        S.QUARANTINED
    )
    assert next_execution_state(S.QUARANTINED, M.VM_ONLY, facts()) == S.RUNNING
    assert next_execution_state(S.RUNNING, M.VM_ONLY, facts()) is None
    assert next_execution_state(S.RUNNING, M.VM_ONLY, facts(target_running=True)) is None
    done = facts(target_running=True, verified=True)
    assert next_execution_state(S.RUNNING, M.VM_ONLY, done) == S.SUCCEEDED


def test_a_repaired_node_that_fails_its_verification_check_fails_the_remediation():
    failed = facts(target_running=True, verification_failed=True)
    assert next_execution_state(S.RUNNING, M.REBOOT_VM, failed) == S.FAILED


def test_a_pending_repair_waits_while_the_rails_forbid_starting():
    assert next_execution_state(S.PENDING, M.VM_ONLY, facts(may_start=False)) is None
    assert next_execution_state(S.PENDING, M.VM_ONLY, facts(may_start=True)) == S.QUARANTINING


def test_an_eviction_succeeds_when_the_old_node_is_gone():
    evict = M.EVICT_WITHOUT_REPLACEMENT
    assert next_execution_state(S.RUNNING, evict, facts(target_running=True)) is None
    assert next_execution_state(S.RUNNING, evict, facts(old_node_gone=True)) == S.SUCCEEDED


def test_nothing_starts_before_the_grace_period_ends_or_approval():
    assert next_execution_state(S.PENDING, M.REBOOT_VM, facts(grace_over=False)) is None
    assert next_execution_state(S.PENDING_APPROVAL, M.REBOOT_VM, facts()) is None


def test_a_deleted_cluster_cancels_and_a_vanished_node_cancels_before_work_starts():
    assert next_execution_state(S.RUNNING, M.VM_ONLY, facts(cluster_deleting=True)) == (S.CANCELLED)
    assert next_execution_state(S.PENDING, M.VM_ONLY, facts(node_gone=True)) == S.CANCELLED


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_never_change(state: S):
    assert next_execution_state(state, M.VM_ONLY, facts(cluster_deleting=True)) is None


def test_a_repair_whose_node_a_scale_down_removed_ends_cancelled():
    assert next_execution_state(S.RUNNING, M.VM_ONLY, facts(target_gone=True)) == S.CANCELLED
    assert next_execution_state(S.RUNNING, M.REBOOT_VM, facts(target_gone=True)) == S.CANCELLED
    assert next_execution_state(S.QUARANTINED, M.REBOOT_VM, facts(node_gone=True)) == (S.CANCELLED)

"""The pure lifecycle machine: sequences, completion rules and status mapping."""

from __future__ import annotations

from clusterplane.domain.enums import ClusterPhase, ClusterStatus, NodePhase
from clusterplane.domain.lifecycle import (
    BringUpFacts,
    bring_up_sequence,
    next_phase,
    node_status,
    phase_after,
    phase_complete,
    phase_reached,
    status_for,
    workers_may_launch,
)

P = ClusterPhase
NOTHING = BringUpFacts(False, False, False, False)


def test_every_phase_maps_to_a_wire_status():
    for phase in ClusterPhase:
        assert isinstance(status_for(phase), ClusterStatus)


def test_test_phases_report_running_acceptance_tests():
    assert status_for(P.RUNNING_NCCL_TESTS) == ClusterStatus.RUNNING_ACCEPTANCE_TESTS
    assert status_for(P.QUEUED) == ClusterStatus.WAITING_FOR_CONTROL_PLANE_NODES


def test_the_sequence_includes_the_volume_and_tests_only_when_asked_for():
    bare = bring_up_sequence(has_volume=False, acceptance_tests=False, nccl_tests=False)
    full = bring_up_sequence(has_volume=True, acceptance_tests=True, nccl_tests=True)
    assert P.WAITING_FOR_SHARED_VOLUME not in bare and P.RUNNING_ACCEPTANCE_TESTS not in bare
    assert full.index(P.WAITING_FOR_SHARED_VOLUME) < full.index(P.INSTALLING_DRIVERS)
    assert full[-2:] == (P.RUNNING_NCCL_TESTS, P.READY)
    assert bare[0] == P.QUEUED and bare[-1] == P.READY


def test_nccl_tests_need_acceptance_tests():
    seq = bring_up_sequence(has_volume=False, acceptance_tests=False, nccl_tests=True)
    assert P.RUNNING_NCCL_TESTS not in seq


def test_a_phase_is_complete_only_when_its_own_fact_holds():
    assert phase_complete(P.QUEUED, NOTHING)
    assert not phase_complete(P.WAITING_FOR_CONTROL_PLANE_NODES, NOTHING)
    assert phase_complete(
        P.WAITING_FOR_CONTROL_PLANE_NODES, BringUpFacts(True, False, False, False)
    )
    assert not phase_complete(P.WAITING_FOR_DATA_PLANE_NODES, BringUpFacts(True, False, True, True))
    assert not phase_complete(P.WAITING_FOR_SHARED_VOLUME, BringUpFacts(True, True, False, True)), (
        "an attached volume must be provisioned, not only the attach step done"
    )
    assert phase_complete(P.INSTALLING_DRIVERS, BringUpFacts(False, False, False, True))
    assert not phase_complete(P.READY, BringUpFacts(True, True, True, True))


def test_next_phase_walks_the_sequence_and_stops_at_its_end():
    seq = bring_up_sequence(has_volume=False, acceptance_tests=False, nccl_tests=False)
    assert next_phase(seq, P.QUEUED) == P.WAITING_FOR_CONTROL_PLANE_NODES
    assert next_phase(seq, P.READY) is None
    assert next_phase(seq, P.RUNNING_NCCL_TESTS) is None


def test_a_cluster_reaches_the_first_phase_its_facts_do_not_complete():
    seq = bring_up_sequence(has_volume=True, acceptance_tests=True, nccl_tests=True)
    running = BringUpFacts(True, True, False, False)
    assert phase_reached(seq, P.QUEUED, NOTHING) == P.WAITING_FOR_CONTROL_PLANE_NODES
    assert phase_reached(seq, P.QUEUED, running) == P.WAITING_FOR_SUBNET, (
        "a step phase entered on the way has not run its step"
    )
    subnet_done = BringUpFacts(True, False, False, True)
    assert phase_reached(seq, P.WAITING_FOR_SUBNET, subnet_done) == P.WAITING_FOR_DATA_PLANE_NODES
    step_done = BringUpFacts(True, True, False, True)
    assert phase_reached(seq, P.WAITING_FOR_DATA_PLANE_NODES, running) == (
        P.WAITING_FOR_SHARED_VOLUME
    )
    assert phase_reached(seq, P.WAITING_FOR_SHARED_VOLUME, step_done) == (
        P.WAITING_FOR_SHARED_VOLUME
    ), "the volume must be ready too"
    assert phase_reached(seq, P.RUNNING_NCCL_TESTS, step_done) == P.READY
    assert phase_reached(seq, P.SCHEDULED, running) == P.SCHEDULED


def test_workers_launch_only_after_the_control_plane_and_subnet():
    seq = bring_up_sequence(has_volume=False, acceptance_tests=True, nccl_tests=True)
    assert not workers_may_launch(P.WAITING_FOR_CONTROL_PLANE_NODES, seq)
    assert not workers_may_launch(P.WAITING_FOR_SUBNET, seq)
    assert workers_may_launch(P.WAITING_FOR_DATA_PLANE_NODES, seq)
    assert workers_may_launch(P.READY, seq)


def test_node_status_says_draining_and_deleted_before_the_phase():
    assert node_status(NodePhase.RUNNING, marked_for_deletion=False, deleted=False) == "Running"
    assert node_status(NodePhase.RUNNING, marked_for_deletion=True, deleted=False) == "Draining"
    assert node_status(NodePhase.SUCCEEDED, marked_for_deletion=True, deleted=True) == "Deleted"
    assert node_status(NodePhase.BOOTSTRAPPING, marked_for_deletion=False, deleted=False) == (
        "Joining"
    )


def test_a_phase_that_left_the_sequence_is_followed_by_the_next_one_that_remains():
    # Scaled down to one worker during the NCCL tests: they no longer apply, Ready follows.
    seq = bring_up_sequence(has_volume=False, acceptance_tests=True, nccl_tests=False)
    assert phase_after(seq, P.RUNNING_NCCL_TESTS) == P.READY
    assert phase_after(seq, P.RUNNING_ACCEPTANCE_TESTS) == P.READY
    assert phase_after(seq, P.READY) is None

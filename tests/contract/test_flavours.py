"""The contract every cluster flavour keeps: each bring-up step finishes and answers the
same when asked again; joins, removals and config are ensures; a drain records who
drained and an undrain by anyone else leaves the nodes drained; unreadable state is a
`PermanentProviderError` (a flavour that keeps no state, `FlavourCapability.STATE`,
ignores what it is handed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from clusterplane.errors import PermanentProviderError
from clusterplane.providers.models import BringUpStep, ClusterConfigSpec, ClusterStepSpec, DrainSpec
from tests.contract.kits import FlavourCapability, FlavourKit
from tests.contract.support import converge, persisted


@pytest.fixture
def kit(flavour_kit: FlavourKit) -> FlavourKit:
    return flavour_kit


def step_spec(kit: FlavourKit, step: BringUpStep, cluster_type: str) -> ClusterStepSpec:
    return ClusterStepSpec(kit.node.cluster_id, cluster_type, step, kit.node.region, num_nodes=2)


def drain_spec(kit: FlavourKit, drained_by: str = "clusterplane") -> DrainSpec:
    return DrainSpec(
        cluster_id=kit.node.cluster_id,
        cluster_type=kit.node.cluster_type,
        region=kit.node.region,
        node_names=(kit.node.node_name,),
        reason=f"{drained_by}: contract test",
        drained_by=drained_by,
    )


@pytest.mark.parametrize("step", list(BringUpStep))
def test_every_bring_up_step_finishes_for_every_cluster_type_it_serves(
    kit: FlavourKit, step: BringUpStep
):
    for cluster_type in kit.cluster_types:
        spec = step_spec(kit, step, cluster_type)
        started = kit.flavour.start_step(spec, kit.now)
        done = converge(
            kit, lambda s, now, spec=spec: kit.flavour.poll_step(spec, s, now), started.state
        )
        again = kit.flavour.poll_step(spec, persisted(done.state), kit.advance())
        assert again.done, "a finished step stays finished"


def test_a_node_joins_and_leaves_and_each_can_be_repeated(kit: FlavourKit):
    joined = kit.flavour.join_node(kit.node, kit.now)
    joined_again = kit.flavour.join_node(kit.node, kit.advance())
    assert joined.done == joined_again.done
    member = converge(kit, lambda s, now: kit.flavour.join_node(kit.node, now), joined.state)
    removed = converge(kit, lambda s, now: kit.flavour.remove_node(kit.node, s, now), member.state)
    assert kit.flavour.remove_node(kit.node, persisted(removed.state), kit.advance()).done


def test_applying_the_same_config_twice_is_harmless(kit: FlavourKit):
    spec = ClusterConfigSpec(
        cluster_id=kit.node.cluster_id,
        cluster_type=kit.node.cluster_type,
        region=kit.node.region,
        add_ons=[{"name": "dashboard", "type": "dashboard", "config": {}}],
        cluster_config={},
    )
    first = converge(kit, lambda s, now: kit.flavour.apply_config(spec, now), {})
    second = converge(kit, lambda s, now: kit.flavour.apply_config(spec, now), {})
    assert first.done and second.done


def test_a_drain_finishes_and_says_who_drained(kit: FlavourKit):
    spec = drain_spec(kit)
    started = kit.flavour.drain(spec, None, kit.now)
    # a crash after the drain started: the controller asks again with the state it saved
    repeated = kit.flavour.drain(spec, persisted(started.state), kit.advance())
    done = converge(kit, lambda s, now: kit.flavour.drain(spec, s, now), repeated.state)
    assert done.drained_by == "clusterplane"
    seen = kit.flavour.is_drained(spec, persisted(done.state), kit.advance())
    assert seen.done and seen.drained_by == "clusterplane"


def test_an_undrain_only_returns_nodes_its_caller_drained(kit: FlavourKit):
    theirs = drain_spec(kit, drained_by="operator")
    drained = converge(kit, lambda s, now: kit.flavour.drain(theirs, s or None, now), {})
    ours = drain_spec(kit)
    refused = kit.flavour.undrain(ours, persisted(drained.state), kit.advance())
    assert not refused.done and refused.drained_by == "operator"
    still = kit.flavour.is_drained(ours, persisted(refused.state), kit.advance())
    assert still.done and still.drained_by == "operator"
    undrained = converge(
        kit, lambda s, now: kit.flavour.undrain(theirs, s, now), refused.state
    )  # like a drain, it may take the scheduler a while
    assert not kit.flavour.is_drained(theirs, persisted(undrained.state), kit.advance()).done


@pytest.mark.parametrize("garbage", [{}, {"started_at": "soon", "duration": "x"}])
def test_state_the_flavour_cannot_read_is_a_permanent_failure_with_a_message(
    kit: FlavourKit, garbage: dict[str, object]
):
    spec = step_spec(kit, BringUpStep.DRIVERS, kit.node.cluster_type)
    if FlavourCapability.STATE not in kit.supports:
        # It keeps no state, so reads none: any state answers what its own does.
        own = kit.flavour.start_step(spec, kit.now).state
        polled = kit.flavour.poll_step(spec, garbage, kit.now)
        expected = kit.flavour.poll_step(spec, persisted(own), kit.now)
        assert replace(polled, state={}) == replace(expected, state={})
        drained = kit.flavour.is_drained(drain_spec(kit), garbage, kit.now)
        fresh = kit.flavour.is_drained(drain_spec(kit), {}, kit.now)
        assert replace(drained, state={}) == replace(fresh, state={})
        return
    for verb in (
        lambda: kit.flavour.poll_step(spec, garbage, kit.now),
        lambda: kit.flavour.is_drained(drain_spec(kit), garbage, kit.now),
    ):
        with pytest.raises(PermanentProviderError) as failure:
            verb()
        assert failure.value.message

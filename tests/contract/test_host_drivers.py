"""The contract every host driver keeps: idempotent verbs, repeat after a crash, failures
reported as `PermanentProviderError` (never another exception), opaque JSON state; an
optional capability the kit declares works, one it does not is refused the same way."""

from __future__ import annotations

import pytest

from clusterplane.domain.checks import CheckKind, CheckPurpose
from clusterplane.domain.enums import NodePhase
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.contracts import HostChecks
from clusterplane.providers.models import CheckSpec, RebootKind
from clusterplane.providers.registry import Drivers
from clusterplane.simulation.storage import SimulatedStorage
from tests.contract.kits import Capability, HostKit
from tests.contract.support import converge, persisted


@pytest.fixture
def kit(host_kit: HostKit) -> HostKit:
    return host_kit


ORDER = [NodePhase.PENDING, NodePhase.SCHEDULING, NodePhase.BOOTING, NodePhase.BOOTSTRAPPING]


def test_a_prepared_node_comes_up_running_through_phases_that_only_move_forward(kit: HostKit):
    deadline = kit.now + kit.horizon
    started = kit.host.prepare(kit.node, kit.now)
    seen = [started.phase]
    state = started.state
    while not (progress := kit.host.describe(kit.node, persisted(state), kit.advance())).done:
        assert not progress.failed, progress.message
        assert kit.now < deadline, "the node did not come up within the horizon"
        seen.append(progress.phase)
        state = progress.state
    assert progress.phase == NodePhase.RUNNING
    ranks = [ORDER.index(p) for p in seen]
    assert ranks == sorted(ranks), f"phases went backwards: {seen}"


def test_describing_twice_at_one_time_answers_the_same(kit: HostKit):
    state = kit.host.prepare(kit.node, kit.now).state
    now = kit.advance()
    assert kit.host.describe(kit.node, persisted(state), now) == kit.host.describe(
        kit.node, persisted(state), now
    )


def test_preparing_again_after_a_crash_before_the_state_was_saved_still_converges(kit: HostKit):
    kit.host.prepare(kit.node, kit.now)  # the controller died before persisting this
    again = kit.host.prepare(kit.node, kit.advance())
    done = converge(kit, lambda s, now: kit.host.describe(kit.node, s, now), again.state)
    assert done.phase == NodePhase.RUNNING


def test_a_release_finishes_and_releasing_again_stays_finished(kit: HostKit):
    running = converge(
        kit,
        lambda s, now: kit.host.describe(kit.node, s, now),
        kit.host.prepare(kit.node, kit.now).state,
    )
    first = kit.host.release(kit.node, persisted(running.state), kit.advance())
    # a crash after the release started: the controller calls again with the state it had
    again = kit.host.release(kit.node, persisted(running.state), kit.advance())
    done = converge(kit, lambda s, now: kit.host.release(kit.node, s, now), again.state)
    assert done.done and not first.failed
    repeat = kit.host.release(kit.node, persisted(done.state), kit.advance())
    assert repeat.done, "a release of a node already gone is done"


def running(kit: HostKit) -> dict[str, object]:
    return converge(
        kit,
        lambda s, now: kit.host.describe(kit.node, s, now),
        kit.host.prepare(kit.node, kit.now).state,
    ).state


@pytest.mark.parametrize("kind", list(RebootKind))
def test_a_reboot_brings_the_node_back_or_a_driver_without_reboots_refuses_it(
    kit: HostKit, kind: RebootKind
):
    state = running(kit)
    if Capability.REBOOT not in kit.supports:
        with pytest.raises(PermanentProviderError) as refused:
            kit.host.reboot(kit.node, persisted(state), kind, kit.advance())
        assert kind.value in refused.value.message
        still = kit.host.describe(kit.node, persisted(state), kit.advance())
        assert still.done and still.phase == NodePhase.RUNNING, "a refusal changes nothing"
        return
    rebooted = kit.host.reboot(kit.node, persisted(state), kind, kit.advance())
    assert not rebooted.done and rebooted.phase != NodePhase.RUNNING
    back = converge(kit, lambda s, now: kit.host.describe(kit.node, s, now), rebooted.state)
    assert back.phase == NodePhase.RUNNING


@pytest.mark.parametrize("garbage", [{}, {"launched_at": "yesterday"}, {"unknown": 1}])
def test_state_the_driver_cannot_read_is_a_permanent_failure_with_a_message(
    kit: HostKit, garbage: dict[str, object]
):
    with pytest.raises(PermanentProviderError) as failure:
        kit.host.describe(kit.node, garbage, kit.now)
    assert failure.value.message


def test_an_active_check_finishes_with_figures_or_the_driver_has_no_check_feature(
    kit: HostKit,
):
    if Capability.CHECKS not in kit.supports:
        assert not isinstance(kit.host, HostChecks), "a driver with checks must declare them"
        drivers = Drivers(hosts={"d": kit.host}, flavours={}, storage=SimulatedStorage())
        assert drivers.checks("d") is None, "so the controllers fail the check, naming why"
        return
    assert isinstance(kit.host, HostChecks)
    spec = CheckSpec("run-contract", CheckKind.DCGM_DIAG, 2, CheckPurpose.ON_DEMAND)
    started = kit.host.start_check(kit.host_spec, spec, kit.now)
    assert started.poll_after_seconds >= 0
    again = kit.host.start_check(kit.host_spec, spec, kit.now)  # the same run, not another
    done = converge(
        kit, lambda s, now: kit.host.poll_check(kit.host_spec, spec, s, now), started.state
    )
    assert done.figures, "a finished check reports what it measured"
    assert kit.host.poll_check(kit.host_spec, spec, persisted(done.state), kit.now) == done
    assert kit.host.poll_check(kit.host_spec, spec, persisted(again.state), kit.now).done


@pytest.mark.parametrize("garbage", [{}, {"run_id": "another-run", "started_at": "x"}])
def test_check_state_the_driver_cannot_read_is_a_permanent_failure(
    kit: HostKit, garbage: dict[str, object]
):
    if not isinstance(kit.host, HostChecks):
        return  # no check feature: nothing to poll (the test above)
    spec = CheckSpec("run-contract", CheckKind.DCGM_DIAG, 2, CheckPurpose.ON_DEMAND)
    kit.host.start_check(kit.host_spec, spec, kit.now)
    with pytest.raises(PermanentProviderError) as failure:
        kit.host.poll_check(kit.host_spec, spec, garbage, kit.now)
    assert failure.value.message

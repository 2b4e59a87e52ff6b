"""The contract every host driver keeps: idempotent verbs, repeat after a crash, failures
reported as `PermanentProviderError` (never another exception), opaque JSON state."""

from __future__ import annotations

import pytest

from clusterplane.domain.checks import CheckKind, CheckPurpose
from clusterplane.domain.enums import NodePhase
from clusterplane.errors import PermanentProviderError
from clusterplane.providers.contracts import HostChecks
from clusterplane.providers.models import CheckSpec, RebootKind
from tests.contract.kits import HostKit
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


@pytest.mark.parametrize("kind", list(RebootKind))
def test_a_rebooted_node_boots_again_and_comes_back_running(kit: HostKit, kind: RebootKind):
    running = converge(
        kit,
        lambda s, now: kit.host.describe(kit.node, s, now),
        kit.host.prepare(kit.node, kit.now).state,
    )
    rebooted = kit.host.reboot(kit.node, persisted(running.state), kind, kit.advance())
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


def test_an_active_check_finishes_with_figures_and_polling_again_answers_the_same(kit: HostKit):
    if not isinstance(kit.host, HostChecks):
        pytest.skip("this host driver has no check feature")
    spec = CheckSpec("run-contract", CheckKind.DCGM_DIAG, 2, CheckPurpose.ON_DEMAND)
    started = kit.host.start_check(kit.host_spec, spec, kit.now)
    assert started.poll_after_seconds >= 0
    done = converge(
        kit, lambda s, now: kit.host.poll_check(kit.host_spec, spec, s, now), started.state
    )
    assert done.figures, "a finished check reports what it measured"
    assert kit.host.poll_check(kit.host_spec, spec, persisted(done.state), kit.now) == done

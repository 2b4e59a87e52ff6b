"""The simulated driver: realistic, seeded durations that survive restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clusterplane.domain.enums import ClusterPhase, NodePhase, NodeRole
from clusterplane.providers.models import ClusterStepSpec, InstanceSpec, VolumeSpec
from clusterplane.providers.simulated import SimulatedProvider

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = InstanceSpec(
    instance_id="i-1",
    cluster_id="c-1",
    role=NodeRole.GPU_WORKER,
    node_name="gpu-dp-1",
    host_name="h1",
    region="r",
    gpu_type="H100_SXM",
    num_gpus=8,
    image="ubuntu-22.04",
)


def phases_over(provider: SimulatedProvider, minutes: int) -> list[NodePhase]:
    state = provider.launch_instance(SPEC, T0)
    seen: list[NodePhase] = []
    for minute in range(minutes):
        phase = provider.describe_instance(SPEC, state, T0 + timedelta(minutes=minute)).phase
        if not seen or seen[-1] != phase:
            seen.append(phase)
    return seen


def test_an_instance_walks_scheduling_booting_bootstrapping_running_over_minutes():
    provider = SimulatedProvider(seed=1)
    assert phases_over(provider, 30) == [
        NodePhase.SCHEDULING,
        NodePhase.BOOTING,
        NodePhase.BOOTSTRAPPING,
        NodePhase.RUNNING,
    ]
    state = provider.launch_instance(SPEC, T0)
    still_booting = provider.describe_instance(SPEC, state, T0 + timedelta(minutes=2))
    assert still_booting.phase != NodePhase.RUNNING, "GPU hosts take minutes to come up"


def test_durations_are_the_same_for_the_same_seed_and_differ_across_seeds():
    a = SimulatedProvider(seed=7).launch_instance(SPEC, T0)
    b = SimulatedProvider(seed=7).launch_instance(SPEC, T0)
    c = SimulatedProvider(seed=8).launch_instance(SPEC, T0)
    assert a == b and a != c


def test_a_duration_factor_of_zero_makes_every_step_instantaneous():
    provider = SimulatedProvider(duration_factor=0)
    state = provider.launch_instance(SPEC, T0)
    assert provider.describe_instance(SPEC, state, T0).phase == NodePhase.RUNNING


def test_state_is_all_the_driver_needs_so_a_new_driver_object_continues_it():
    state = SimulatedProvider(seed=3).launch_instance(SPEC, T0)
    later = T0 + timedelta(hours=1)
    assert SimulatedProvider(seed=99).describe_instance(SPEC, state, later).phase == (
        NodePhase.RUNNING
    )


def test_termination_finishes_after_its_duration_and_stays_finished():
    provider = SimulatedProvider()
    state = provider.launch_instance(SPEC, T0)
    first = provider.terminate_instance(SPEC, state, T0 + timedelta(hours=1))
    assert not first.done
    done = provider.terminate_instance(SPEC, first.state, T0 + timedelta(hours=2))
    again = provider.terminate_instance(SPEC, done.state, T0 + timedelta(hours=3))
    assert done.done and again.done


def test_a_cluster_step_is_done_only_after_its_duration():
    provider = SimulatedProvider()
    step = ClusterStepSpec(
        cluster_id="c", kind=ClusterPhase.INSTALLING_DRIVERS.value, region="r", num_nodes=2
    )
    state = provider.start_step(step, T0)
    assert not provider.poll_step(step, state, T0 + timedelta(seconds=60)).done
    assert provider.poll_step(step, state, T0 + timedelta(hours=1)).done


def test_a_volume_is_ready_after_provisioning_and_reports_a_resize_when_done():
    provider = SimulatedProvider()
    spec = VolumeSpec(volume_id="v", region="r", size_tib=2)
    state = provider.create_volume(spec, T0)
    assert not provider.describe_volume(spec, state, T0).ready
    ready = provider.describe_volume(spec, state, T0 + timedelta(hours=1))
    assert ready.ready and ready.size_tib == 2
    bigger = VolumeSpec(volume_id="v", region="r", size_tib=5)
    resized = provider.resize_volume(bigger, ready.state, T0 + timedelta(hours=1))
    assert provider.describe_volume(bigger, resized, T0 + timedelta(hours=1)).size_tib == 2
    assert provider.describe_volume(bigger, resized, T0 + timedelta(hours=2)).size_tib == 5

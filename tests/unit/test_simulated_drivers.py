"""The simulated drivers: realistic, seeded durations that survive restarts, and checks
that see the simulated faults. (What every driver must do is tests/contract.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clusterplane.domain.checks import CheckKind, CheckPurpose, judge
from clusterplane.domain.enums import NodePhase, NodeRole
from clusterplane.domain.health import Action
from clusterplane.providers.models import (
    BringUpStep,
    CheckSpec,
    ClusterStepSpec,
    HostSpec,
    InstanceSpec,
    RebootKind,
    VolumeSpec,
)
from clusterplane.simulation.checks import Fault
from clusterplane.simulation.flavour import SimulatedFlavour
from clusterplane.simulation.hosts import SimulatedHostDriver
from clusterplane.simulation.storage import SimulatedStorage

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
HOST = HostSpec(host_name="h1", region="r", gpu_type="H100_SXM", num_gpus=8)


class Ledger:
    """Faults on hosts, as `simulation.faults.FaultLedger` keeps them, in memory."""

    def __init__(self) -> None:
        self.faults: dict[str, list[tuple[Fault, Action]]] = {}

    def open_faults(self, host_name: str, now: datetime) -> list[Fault]:
        return [fault for fault, _ in self.faults.get(host_name, [])]

    def repair(self, host_name: str, fixes: Action, now: datetime) -> int:
        strength = list(Action).index
        present = self.faults.get(host_name, [])
        kept = [(f, by) for f, by in present if strength(by) > strength(fixes)]
        self.faults[host_name] = kept
        return len(present) - len(kept)


def phases_over(driver: SimulatedHostDriver, minutes: int) -> list[NodePhase]:
    state = driver.prepare(SPEC, T0).state
    seen: list[NodePhase] = []
    for minute in range(minutes):
        phase = driver.describe(SPEC, state, T0 + timedelta(minutes=minute)).phase
        if not seen or seen[-1] != phase:
            seen.append(phase)
    return seen


def test_a_node_walks_scheduling_booting_bootstrapping_running_over_minutes():
    driver = SimulatedHostDriver(seed=1)
    assert phases_over(driver, 30) == [
        NodePhase.SCHEDULING,
        NodePhase.BOOTING,
        NodePhase.BOOTSTRAPPING,
        NodePhase.RUNNING,
    ]
    state = driver.prepare(SPEC, T0).state
    still_booting = driver.describe(SPEC, state, T0 + timedelta(minutes=2))
    assert still_booting.phase != NodePhase.RUNNING, "GPU hosts take minutes to come up"
    assert not still_booting.done


def test_durations_are_the_same_for_the_same_seed_and_differ_across_seeds():
    a = SimulatedHostDriver(seed=7).prepare(SPEC, T0).state
    b = SimulatedHostDriver(seed=7).prepare(SPEC, T0).state
    c = SimulatedHostDriver(seed=8).prepare(SPEC, T0).state
    assert a == b and a != c


def test_a_duration_factor_of_zero_makes_every_step_instantaneous():
    progress = SimulatedHostDriver(duration_factor=0).prepare(SPEC, T0)
    assert progress.phase == NodePhase.RUNNING and progress.done


def test_state_is_all_the_driver_needs_so_a_new_driver_object_continues_it():
    state = SimulatedHostDriver(seed=3).prepare(SPEC, T0).state
    later = T0 + timedelta(hours=1)
    assert SimulatedHostDriver(seed=99).describe(SPEC, state, later).phase == NodePhase.RUNNING


def test_a_reboot_boots_again_without_scheduling_and_fixes_what_a_reboot_fixes():
    ledger = Ledger()
    ledger.faults["h1"] = [(Fault("ecc", None), Action.REBOOT), (Fault("xid", 79), Action.REPLACE)]
    driver = SimulatedHostDriver(faults=ledger)
    state = driver.prepare(SPEC, T0).state
    rebooted = driver.reboot(SPEC, state, RebootKind.POWER_CYCLE, T0 + timedelta(hours=1))
    assert rebooted.phase == NodePhase.BOOTING
    assert ledger.open_faults("h1", T0) == [Fault("xid", 79)], "a power-cycle replaces nothing"


def test_a_bring_up_step_is_done_only_after_its_duration():
    flavour = SimulatedFlavour()
    step = ClusterStepSpec(
        cluster_id="c", cluster_type="SLURM", step=BringUpStep.DRIVERS, region="r", num_nodes=2
    )
    started = flavour.start_step(step, T0)
    assert not flavour.poll_step(step, started.state, T0 + timedelta(seconds=60)).done
    assert flavour.poll_step(step, started.state, T0 + timedelta(hours=1)).done


def test_a_volume_is_ready_after_provisioning_and_reports_a_resize_when_done():
    storage = SimulatedStorage()
    spec = VolumeSpec(volume_id="v", region="r", size_tib=2)
    created = storage.create_volume(spec, T0)
    assert not created.done
    ready = storage.describe_volume(spec, created.state, T0 + timedelta(hours=1))
    assert ready.done and ready.size_tib == 2
    bigger = VolumeSpec(volume_id="v", region="r", size_tib=5)
    resized = storage.resize_volume(bigger, ready.state, T0 + timedelta(hours=1)).state
    assert storage.describe_volume(bigger, resized, T0 + timedelta(hours=1)).size_tib == 2
    assert storage.describe_volume(bigger, resized, T0 + timedelta(hours=2)).size_tib == 5


def check(kind: CheckKind, purpose: CheckPurpose, level: int | None = None) -> CheckSpec:
    return CheckSpec(run_id="run-1", kind=kind, level=level, purpose=purpose)


def test_a_check_takes_its_seeded_time_then_measures_the_open_faults():
    ledger = Ledger()
    driver = SimulatedHostDriver(seed=4, faults=ledger)
    nccl = check(CheckKind.NCCL_SINGLE_NODE, CheckPurpose.ON_DEMAND)
    started = driver.start_check(HOST, nccl, T0)
    assert not started.done and 120 <= started.poll_after_seconds <= 300
    ledger.faults["h1"] = [(Fault("nvlink", None), Action.REBOOT)]
    done = driver.poll_check(HOST, nccl, started.state, T0 + timedelta(hours=1))
    assert done.done
    assert not judge(CheckKind.NCCL_SINGLE_NODE, "H100_SXM", "", done.figures).passed


def test_acceptance_checks_report_at_once_and_a_return_to_service_check_follows_a_repair():
    ledger = Ledger()
    ledger.faults["h1"] = [(Fault("xid", 79), Action.REPLACE)]
    driver = SimulatedHostDriver(faults=ledger)
    acceptance = driver.start_check(HOST, check(CheckKind.GPU_BURN, CheckPurpose.ACCEPTANCE), T0)
    assert acceptance.done and acceptance.figures["failing_gpus"]
    driver.start_check(HOST, check(CheckKind.DCGM_DIAG, CheckPurpose.RETURN_TO_SERVICE, 3), T0)
    assert ledger.open_faults("h1", T0) == [], "the hardware repair fixes everything"

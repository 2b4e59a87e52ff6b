"""Health, pure: classification, escalation, rails, the fault model and check judgements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from clusterplane.domain import rails
from clusterplane.domain.checks import CheckKind, judge
from clusterplane.domain.enums import RemediationMode
from clusterplane.domain.health import (
    KIND_TABLE,
    XID_TABLE,
    Action,
    EventKind,
    Severity,
    classify,
    escalate,
    mode_for,
)
from clusterplane.simulation import checks as simulated
from clusterplane.simulation import fault_model

M = RemediationMode
NOW = datetime(2026, 3, 1, tzinfo=UTC)
SPEC_ALERT_NAMES = {
    "DmesgGpuFallenOffBus",
    "GpuSmClockThermalThrottle",
    "GpuPcieReplayRateHigh",
    "IBLinkFlapping",
    "DmesgXidError",
    "GpuEccDoubleBitError",
    "GpuRowRemapFailure",
}


def test_xid_79_is_critical_and_asks_for_a_move_to_another_host():
    verdict = classify(EventKind.XID, 79)
    assert verdict.alert_name == "DmesgGpuFallenOffBus"
    assert verdict.severity == Severity.CRITICAL and verdict.action == Action.REPLACE
    assert mode_for(verdict.action) == M.HOST_AWARE


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (13, Action.NONE),
        (31, Action.NONE),
        (48, Action.GPU_RESET),
        (74, Action.REBOOT),
        (64, Action.REPLACE),
        (94, Action.GPU_RESET),
        (95, Action.REBOOT),
        (119, Action.REBOOT),
    ],
)
def test_xid_codes_map_to_their_documented_action(code: int, action: Action):
    assert classify(EventKind.XID, code).action == action


def test_an_unknown_xid_is_a_warning_that_asks_for_nothing():
    verdict = classify(EventKind.XID, 999)
    assert verdict.severity == Severity.WARNING and not verdict.unhealthy


def test_an_xid_without_its_code_is_refused():
    with pytest.raises(ValueError):
        classify(EventKind.XID)


def test_every_signal_kind_is_classified_and_uses_the_spec_alert_names_where_it_has_one():
    for kind in EventKind:
        verdict = classify(kind, 79 if kind == EventKind.XID else None)
        assert verdict.alert_name
    names = {v.alert_name for v in KIND_TABLE.values()} | {"DmesgXidError"}
    assert SPEC_ALERT_NAMES - {"DmesgXidError"} <= names | {"DmesgGpuFallenOffBus"}
    assert all(len(entry) == 3 for entry in XID_TABLE.values())


def test_heartbeat_loss_fails_closed():
    verdict = classify(EventKind.HEARTBEAT_LOSS)
    assert verdict.unhealthy and verdict.severity == Severity.CRITICAL


def test_escalation_climbs_one_rung_above_a_repair_that_did_not_help():
    assert escalate(M.REBOOT_VM, None) == M.REBOOT_VM
    assert escalate(M.REBOOT_VM, M.REBOOT_VM) == M.HOST_POWER_CYCLE
    assert escalate(M.HOST_POWER_CYCLE, M.HOST_POWER_CYCLE) == M.VM_ONLY
    assert escalate(M.REBOOT_VM, M.VM_ONLY) == M.HOST_AWARE
    assert escalate(M.HOST_AWARE, M.REBOOT_VM) == M.HOST_AWARE
    assert escalate(M.HOST_AWARE, M.HOST_AWARE) == M.HOST_AWARE, "the top rung stays"


def facts(**overrides: object) -> rails.SignalFacts:
    values: dict[str, object] = {
        "auto_remediation_enabled": True,
        "has_open_remediation": False,
        "last_ended_at": None,
        "unhealthy_workers": 1,
        "workers": 4,
    }
    values.update(overrides)
    return rails.SignalFacts(**values)  # type: ignore[arg-type]


def hold(**overrides: object) -> rails.Hold | None:
    return rails.hold_for(
        facts(**overrides), now=NOW, cooldown=timedelta(minutes=30), max_unhealthy_share=0.4
    )


def test_a_signal_may_become_a_remediation_when_no_rail_holds_it():
    assert hold() is None


def test_the_cooldown_holds_until_thirty_minutes_after_the_last_repair_ended():
    held = hold(last_ended_at=NOW - timedelta(minutes=10))
    assert held is not None and "cooldown" in held.reason
    assert held.retry_at == NOW + timedelta(minutes=20)
    assert hold(last_ended_at=NOW - timedelta(minutes=30)) is None


def test_the_stop_rule_holds_above_forty_percent_unhealthy_and_not_at_it():
    assert hold(unhealthy_workers=2, workers=5) is None  # 40%: not more than
    held = hold(unhealthy_workers=3, workers=5)
    assert held is not None and "3 of 5" in held.reason


def test_opt_out_and_an_open_remediation_hold_without_a_retry_time():
    for held in (hold(auto_remediation_enabled=False), hold(has_open_remediation=True)):
        assert held is not None and held.retry_at is None


def test_the_fleet_cap_allows_at_least_one_repair():
    assert rails.fleet_cap(12500, 0.1) == 1250
    assert rails.fleet_cap(3, 0.1) == 1


def test_one_project_never_holds_every_repair_slot_of_the_fleet():
    assert rails.project_cap(4, 1250) == 4, "the operator's limit"
    assert rails.project_cap(4, 3) == 2, "one slot is left to the other projects"
    assert rails.project_cap(4, 2) == 1
    assert rails.project_cap(4, 1) == 1, "a fleet of one slot still repairs"
    assert rails.project_cap(0, 50) == 1


def test_the_fault_model_is_seeded_and_follows_the_published_rate():
    hosts = [f"h{i}" for i in range(2048)]
    one = fault_model.schedule(7, hosts, days=54)
    assert one == fault_model.schedule(7, hosts, days=54)
    assert one != fault_model.schedule(8, hosts, days=54)
    # Llama 3: 419 interruptions in 54 days on 2,048 hosts.
    assert 340 <= len(one) <= 500
    tenfold = fault_model.schedule(7, hosts[:200], days=30, rate_multiplier=10)
    expected = 200 * 30 * 10 * fault_model.INTERRUPTIONS_PER_HOST_DAY
    assert 0.8 * expected <= len(tenfold) <= 1.2 * expected
    assert all(a.at_seconds <= b.at_seconds for a, b in pairwise(one))


def test_bus_bandwidth_thresholds_depend_on_the_gpu_type():
    assert judge(CheckKind.NCCL_SINGLE_NODE, "H100_SXM", "", {"bus_bandwidth_gbps": 310}).passed
    assert not judge(CheckKind.NCCL_SINGLE_NODE, "B200_SXM", "", {"bus_bandwidth_gbps": 310}).passed
    assert not judge(CheckKind.NCCL_MULTI_NODE, "H100_SXM", "", {"bus_bandwidth_gbps": 320}).passed
    ib = judge(CheckKind.IB_WRITE_BW, "H100_SXM", "ConnectX-7 NDR 400Gb/s", {"min_port_gbits": 300})
    assert not ib.passed and "< 320" in ib.message


def test_a_healthy_simulated_host_passes_every_check_and_faults_fail_the_ones_that_see_them():
    nvlink = [simulated.Fault("nvlink", None)]
    for kind in CheckKind:
        level = 4 if kind == CheckKind.DCGM_DIAG else None
        figures = simulated.measure(1, f"run-{kind}", kind, level, "H100_SXM", 8, [])
        assert judge(kind, "H100_SXM", "ConnectX-7 NDR 400Gb/s", figures).passed, kind
    bad = simulated.measure(1, "r", CheckKind.NCCL_SINGLE_NODE, None, "H100_SXM", 8, nvlink)
    assert not judge(CheckKind.NCCL_SINGLE_NODE, "H100_SXM", "", bad).passed
    ecc = [simulated.Fault("ecc", None)]
    level1 = simulated.measure(1, "r", CheckKind.DCGM_DIAG, 1, "H100_SXM", 8, ecc)
    level2 = simulated.measure(1, "r", CheckKind.DCGM_DIAG, 2, "H100_SXM", 8, ecc)
    assert not level1["failing_gpus"] and level2["failing_gpus"], "memory faults need level 2"


def test_check_durations_are_realistic_and_grow_with_the_dcgm_level():
    short = simulated.duration(1, "x", CheckKind.DCGM_DIAG, 1)
    extended = simulated.duration(1, "x", CheckKind.DCGM_DIAG, 4)
    assert 45 <= short <= 120 and 3600 <= extended <= 7200
    assert 300 <= simulated.duration(1, "x", CheckKind.GPU_BURN, None) <= 330


@pytest.mark.parametrize(
    ("kind", "figures"),
    [
        (CheckKind.DCGM_DIAG, {}),
        (CheckKind.GPU_BURN, {"failing_gpus": "none"}),
        (CheckKind.NCCL_SINGLE_NODE, {"failing_gpus": []}),
        (CheckKind.IB_WRITE_BW, {"min_port_gbits": "fast"}),
    ],
)
def test_a_check_report_without_the_figure_its_verdict_needs_fails(
    kind: CheckKind, figures: dict[str, object]
):
    verdict = judge(kind, "H100_SXM", "ConnectX-7", figures)
    assert not verdict.passed and "reported no usable" in verdict.message

"""Health signals, pure: what a passive event means and what it asks for.

`classify(kind, code)` turns an ingested event (an XID code or a signal kind) into a
`Verdict`: the spec's alert name (§4.13), a severity (§4.14) and the recommended action
(none, GPU reset, reboot, replace). `mode_for(action)` maps the action to a remediation
mode; `escalate` picks a stronger mode when a weaker repair of the same node did not help.
The table is documented in docs/health.md; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from clusterplane.domain.enums import RemediationMode


class EventKind(StrEnum):
    XID = "xid"
    ECC = "ecc"
    ROW_REMAP = "row_remap"
    NVLINK = "nvlink"
    THERMAL = "thermal"
    PCIE = "pcie"
    FALLEN_OFF_BUS = "fallen_off_bus"
    IB_LINK_FLAP = "ib_link_flap"
    HEARTBEAT_LOSS = "heartbeat_loss"
    ACTIVE_CHECK = "active_check"  # a failed active check, raised by the check runner
    # A silent agent's node that the cluster's own scheduler (Slurm...) lost too.
    SCHEDULER_NODE_DOWN = "scheduler_node_down"


class Severity(StrEnum):
    INFO = "PHC_SEVERITY_INFO"
    WARNING = "PHC_SEVERITY_WARNING"
    CRITICAL = "PHC_SEVERITY_CRITICAL"


class Action(StrEnum):
    """What a signal asks for, weakest first."""

    NONE = "none"
    GPU_RESET = "gpu_reset"
    REBOOT = "reboot"
    REPLACE = "replace"


ACTION_STRENGTH = {Action.NONE: 0, Action.GPU_RESET: 1, Action.REBOOT: 2, Action.REPLACE: 3}


@dataclass(frozen=True)
class Verdict:
    alert_name: str
    severity: Severity
    action: Action
    title: str

    @property
    def unhealthy(self) -> bool:
        """Whether the node must be kept out of service until repaired."""
        return self.action != Action.NONE


C, W, INFO = Severity.CRITICAL, Severity.WARNING, Severity.INFO
A = Action

# XID code -> (severity, action, mnemonic). Codes not listed are warnings that ask for
# nothing (most XIDs are application faults). Sources: NVIDIA's XID catalogue and its
# GPU memory error management guide.
XID_TABLE: dict[int, tuple[Severity, Action, str]] = {
    13: (W, A.NONE, "Graphics engine exception"),
    31: (W, A.NONE, "GPU memory page fault"),
    43: (INFO, A.NONE, "GPU stopped processing"),
    45: (INFO, A.NONE, "Preemptive cleanup"),
    48: (C, A.GPU_RESET, "Double-bit ECC error"),
    61: (W, A.GPU_RESET, "Internal micro-controller breakpoint"),
    62: (C, A.REBOOT, "Internal micro-controller halt"),
    63: (W, A.NONE, "ECC page retirement or row remapping recorded"),
    64: (C, A.REPLACE, "ECC page retirement or row remapping failure"),
    74: (C, A.REBOOT, "NVLink error"),
    79: (C, A.REPLACE, "GPU has fallen off the bus"),
    92: (W, A.NONE, "High single-bit ECC error rate"),
    94: (W, A.GPU_RESET, "Contained ECC error"),
    95: (C, A.REBOOT, "Uncontained ECC error"),
    119: (C, A.REBOOT, "GSP RPC timeout"),
    120: (C, A.REBOOT, "GSP error"),
    140: (C, A.REBOOT, "Unrecovered ECC error"),
}

# Signal kind (other than XID) -> verdict; alert names from spec §4.13 where it has one.
KIND_TABLE: dict[EventKind, Verdict] = {
    EventKind.ECC: Verdict("GpuEccDoubleBitError", C, A.REBOOT, "Double-bit ECC error"),
    EventKind.ROW_REMAP: Verdict("GpuRowRemapFailure", C, A.REBOOT, "Row remapping failure"),
    EventKind.NVLINK: Verdict("GpuNvlinkDown", C, A.REBOOT, "NVLink down or degraded"),
    EventKind.THERMAL: Verdict(
        "GpuSmClockThermalThrottle", W, A.REPLACE, "SM clocks thermally throttled"
    ),
    EventKind.PCIE: Verdict("GpuPcieReplayRateHigh", W, A.REPLACE, "PCIe replay rate high"),
    EventKind.FALLEN_OFF_BUS: Verdict(
        "DmesgGpuFallenOffBus", C, A.REPLACE, "GPU has fallen off the bus"
    ),
    EventKind.IB_LINK_FLAP: Verdict("IBLinkFlapping", W, A.REPLACE, "InfiniBand link flapping"),
    # Unknown state fails closed: a silent host is treated as broken until it is back.
    EventKind.HEARTBEAT_LOSS: Verdict("NodeHeartbeatLost", C, A.REBOOT, "Node agent silent"),
    EventKind.ACTIVE_CHECK: Verdict(
        "ActiveHealthCheckFailed", C, A.REPLACE, "An active health check failed"
    ),
    # Two signals agree: the agent is silent or its node daemon stopped answering, and
    # the cluster's scheduler lost the node too.
    EventKind.SCHEDULER_NODE_DOWN: Verdict(
        "NodeNotResponding", C, A.REPLACE, "The node's agent and its scheduler both lost it"
    ),
}


def classify(kind: EventKind, code: int | None = None) -> Verdict:
    """The verdict of one event; an XID needs its `code`."""
    if kind != EventKind.XID:
        return KIND_TABLE[kind]
    if code is None:
        raise ValueError("an XID event needs its code")
    severity, action, mnemonic = XID_TABLE.get(code, (W, A.NONE, "Unclassified XID"))
    if code == 79:  # spec §4.13: XID 79 migrates instead of rebooting
        return Verdict("DmesgGpuFallenOffBus", severity, action, f"Xid {code}: {mnemonic}")
    return Verdict("DmesgXidError", severity, action, f"Xid {code}: {mnemonic}")


M = RemediationMode

MODE_FOR_ACTION: dict[Action, RemediationMode] = {
    A.GPU_RESET: M.REBOOT_VM,
    A.REBOOT: M.HOST_POWER_CYCLE,
    A.REPLACE: M.HOST_AWARE,
}
# Automatic repairs from weakest to strongest; eviction is never automatic (spec §4.8).
LADDER: tuple[RemediationMode, ...] = (M.REBOOT_VM, M.HOST_POWER_CYCLE, M.VM_ONLY, M.HOST_AWARE)


def mode_for(action: Action) -> RemediationMode | None:
    return MODE_FOR_ACTION.get(action)


def strength(mode: RemediationMode) -> int:
    return LADDER.index(mode) if mode in LADDER else len(LADDER)


def escalate(wanted: RemediationMode, failed: RemediationMode | None) -> RemediationMode:
    """`wanted`, or the next rung above `failed` when that repair did not help."""
    if failed is None or strength(wanted) > strength(failed):
        return wanted
    above = strength(failed) + 1
    return LADDER[min(above, len(LADDER) - 1)]


def strongest(actions: list[Action]) -> Action:
    return max(actions, key=ACTION_STRENGTH.__getitem__, default=Action.NONE)


# A node agent gone silent. Silence alone never excludes or repairs anything (a flaky link
# must not cost users their jobs): the host is Unknown and the signal is recorded, and a
# repair waits for a second signal, the cluster flavour's own view of the node.
SILENT_AGENT = Verdict("NodeHeartbeatLost", W, A.NONE, "Node agent silent")
SILENCE_HOLD = "silence alone repairs nothing: waiting for the cluster flavour's view of the node"

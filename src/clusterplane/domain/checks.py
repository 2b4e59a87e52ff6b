"""Active health checks, pure: the checks, their levels, and pass thresholds per GPU type.

Checks: DCGM diagnostics (levels 1-4 = spec §4.15's SHORT, MEDIUM, LONG, EXTENDED), a GPU
burn, single-node and multi-node NCCL all-reduce (bus bandwidth), InfiniBand write
bandwidth. `judge` turns measured figures into a pass or a failure with its reason. The
thresholds follow the spec's §5 table (H100-class) and scale with the GPU generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from clusterplane.domain.enums import DcgmDiagLevel


class CheckKind(StrEnum):
    DCGM_DIAG = "dcgm_diag"
    GPU_BURN = "gpu_burn"
    NCCL_SINGLE_NODE = "nccl_single_node"
    NCCL_MULTI_NODE = "nccl_multi_node"
    IB_WRITE_BW = "ib_write_bw"


class CheckPurpose(StrEnum):
    ON_DEMAND = "on_demand"
    SCHEDULED = "scheduled"  # idle hosts, on the fleet's schedule
    ACCEPTANCE = "acceptance"  # bring-up of a cluster
    VERIFICATION = "verification"  # after a repair, before the node serves again
    RETURN_TO_SERVICE = "return_to_service"  # a repaired quarantined host


class CheckState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PASSED = "PASSED"
    FAILED = "FAILED"


DCGM_LEVELS: dict[int, DcgmDiagLevel] = {
    1: DcgmDiagLevel.SHORT,
    2: DcgmDiagLevel.MEDIUM,
    3: DcgmDiagLevel.LONG,
    4: DcgmDiagLevel.EXTENDED,
}
LEVEL_OF = {v: k for k, v in DCGM_LEVELS.items()}

# Minimum all-reduce bus bandwidth in GB/s: (single node, multi node).
BUS_BANDWIDTH_GBPS: dict[str, tuple[float, float]] = {
    "H100_SXM": (300.0, 330.0),
    "H100_SXM_INF": (300.0, 330.0),
    "H200_SXM": (300.0, 330.0),
    "B200_SXM": (550.0, 600.0),
    "B300_SXM": (600.0, 650.0),
    "GB200_SXM": (600.0, 650.0),
    "L40_PCIE": (20.0, 15.0),
    "RTX_6000_PCI": (20.0, 15.0),
}
# Expected (healthy) bus bandwidth, GB/s: what a healthy host measures, roughly.
NOMINAL_BUS_GBPS: dict[str, tuple[float, float]] = {
    "H100_SXM": (480.0, 370.0),
    "H100_SXM_INF": (480.0, 370.0),
    "H200_SXM": (490.0, 380.0),
    "B200_SXM": (760.0, 680.0),
    "B300_SXM": (800.0, 720.0),
    "GB200_SXM": (820.0, 740.0),
    "L40_PCIE": (24.0, 19.0),
    "RTX_6000_PCI": (24.0, 19.0),
}
IB_WRITE_GBITS_MIN = 320.0  # per HCA port, NDR 400 Gb/s (spec §5)


def ib_threshold(hca_type: str) -> float:
    """Per-port write bandwidth floor (Gb/s): 80% of the link rate the HCA names."""
    return (
        IB_WRITE_GBITS_MIN / 2
        if "200" in hca_type and "400" not in hca_type
        else IB_WRITE_GBITS_MIN
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Judgement:
    passed: bool
    message: str


# The figure each check's verdict rests on; a report without it fails (fail closed).
KEY_FIGURE = {
    CheckKind.DCGM_DIAG: "failing_gpus",
    CheckKind.GPU_BURN: "failing_gpus",
    CheckKind.IB_WRITE_BW: "min_port_gbits",
    CheckKind.NCCL_SINGLE_NODE: "bus_bandwidth_gbps",
    CheckKind.NCCL_MULTI_NODE: "bus_bandwidth_gbps",
}


def judge(kind: CheckKind, gpu_type: str, hca_type: str, figures: dict[str, Any]) -> Judgement:
    """Pass or fail from measured figures (bandwidths, failing GPUs, errors); figures
    without the one the verdict rests on, or with one that is not a number (a list for
    failing GPUs), fail: an unknown state fails closed."""
    key = KEY_FIGURE[kind]
    value = figures.get(key)
    usable = isinstance(value, list) if key == "failing_gpus" else _is_number(value)
    if not usable:
        return Judgement(False, f"{kind} reported no usable {key}")
    failing = list(figures["failing_gpus"]) if key == "failing_gpus" else []
    if kind in (CheckKind.DCGM_DIAG, CheckKind.GPU_BURN):
        if failing:
            return Judgement(
                False, f"{kind} failed on GPU(s) {failing}: {figures.get('error', '')}"
            )
        return Judgement(True, f"{kind} passed")
    if kind == CheckKind.IB_WRITE_BW:
        floor = ib_threshold(hca_type)
        worst = float(figures["min_port_gbits"])
        ok = worst >= floor
        return Judgement(
            ok, f"slowest IB port {worst:.0f} Gb/s ({'>=' if ok else '<'} {floor:.0f})"
        )
    single, multi = BUS_BANDWIDTH_GBPS.get(gpu_type, (0.0, 0.0))
    floor = single if kind == CheckKind.NCCL_SINGLE_NODE else multi
    bus = float(figures["bus_bandwidth_gbps"])
    ok = bus >= floor
    return Judgement(
        ok, f"all-reduce bus bandwidth {bus:.0f} GB/s ({'>=' if ok else '<'} {floor:.0f})"
    )

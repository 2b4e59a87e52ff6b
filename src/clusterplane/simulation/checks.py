"""Active health checks on the simulated fleet: how long they take and what they measure.

A check's figures are drawn (seeded by the run id) around a healthy host's nominal values;
each open fault on the host degrades the checks that would see it: a GPU that fell off the
bus fails every DCGM level, an ECC or row-remap fault needs level 2 or more (memory
tests), an NVLink fault cuts NCCL bandwidth, an IB link flap cuts IB and multi-node NCCL
bandwidth. A host whose agent is silent fails everything (unknown state fails closed).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from clusterplane.domain.checks import NOMINAL_BUS_GBPS, CheckKind
from clusterplane.simulation import timings

DURATIONS: dict[str, tuple[float, float, float]] = {
    "dcgm_diag:1": (45.0, 75.0, 120.0),
    "dcgm_diag:2": (120.0, 180.0, 300.0),
    "dcgm_diag:3": (900.0, 1500.0, 2400.0),
    "dcgm_diag:4": (3600.0, 5400.0, 7200.0),
    "gpu_burn": (300.0, 305.0, 330.0),
    "nccl_single_node": (120.0, 180.0, 300.0),
    "nccl_multi_node": (180.0, 300.0, 600.0),
    "ib_write_bw": (60.0, 120.0, 180.0),
}

# fault kind -> the lowest DCGM level that catches it (None: DCGM does not see it)
DCGM_CATCHES: dict[str, int | None] = {
    "xid": 2,
    "fallen_off_bus": 1,
    "ecc": 2,
    "row_remap": 2,
    "nvlink": 2,
    "pcie": 2,
    "thermal": 3,
    "ib_link_flap": None,
    "heartbeat_loss": 1,
    "active_check": 1,
}
BURN_CATCHES = {"xid", "fallen_off_bus", "ecc", "row_remap", "thermal", "heartbeat_loss"}
NCCL_CUT = {"nvlink": 0.35, "pcie": 0.6, "fallen_off_bus": 0.0, "heartbeat_loss": 0.0}
MULTI_NCCL_CUT = {**NCCL_CUT, "ib_link_flap": 0.5}
IB_CUT = {"ib_link_flap": 0.3, "heartbeat_loss": 0.0}


@dataclass(frozen=True)
class Fault:
    kind: str
    code: int | None


def duration(seed: int, run_id: str, kind: CheckKind, level: int | None) -> float:
    key = f"{kind}:{level}" if kind == CheckKind.DCGM_DIAG else str(kind)
    return timings.draw(seed, f"{run_id}:check", DURATIONS[key], 1.0)


_FOUR_WORDS = struct.Struct(">4Q")


class _Draws:
    """Uniform numbers read off one SHA-256 digest of (seed, run id): up to four, and a
    check takes two. (Seeding a Mersenne Twister per check cost more than the rest of a
    check; an acceptance step runs thousands.)"""

    def __init__(self, seed: int, run_id: str):
        digest = hashlib.sha256(f"{seed}:{run_id}:figures".encode()).digest()
        self._words: list[int] = list(_FOUR_WORDS.unpack(digest))

    def _unit(self) -> float:
        return (self._words.pop() >> 11) / 2.0**53  # in [0, 1), 53 bits

    def randrange(self, stop: int) -> int:
        return int(self._unit() * stop)

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self._unit()


def measure(
    seed: int,
    run_id: str,
    kind: CheckKind,
    level: int | None,
    gpu_type: str,
    num_gpus: int,
    faults: list[Fault],
) -> dict[str, Any]:
    """The figures the check reports on this host with these faults."""
    rng = _Draws(seed, run_id)
    kinds = {f.kind for f in faults}
    gpu = rng.randrange(max(1, num_gpus))
    if kind == CheckKind.DCGM_DIAG:
        caught = [
            k for k in kinds if (lvl := DCGM_CATCHES.get(k)) is not None and lvl <= (level or 1)
        ]
        return {"failing_gpus": [gpu] if caught else [], "error": ", ".join(sorted(caught))}
    if kind == CheckKind.GPU_BURN:
        caught = sorted(kinds & BURN_CATCHES)
        return {
            "failing_gpus": [gpu] if caught else [],
            "error": ", ".join(caught),
            "gflops_per_gpu": round(rng.uniform(0.97, 1.02) * (0 if caught else 52000), 1),
        }
    if kind == CheckKind.IB_WRITE_BW:
        factor = min((IB_CUT[k] for k in kinds if k in IB_CUT), default=1.0)
        return {"min_port_gbits": round(rng.uniform(370.0, 392.0) * factor, 1)}
    single, multi = NOMINAL_BUS_GBPS.get(gpu_type, (100.0, 80.0))
    nominal, cuts = (
        (single, NCCL_CUT) if kind == CheckKind.NCCL_SINGLE_NODE else (multi, MULTI_NCCL_CUT)
    )
    factor = min((cuts[k] for k in kinds if k in cuts), default=1.0)
    return {"bus_bandwidth_gbps": round(nominal * rng.uniform(0.96, 1.03) * factor, 1)}

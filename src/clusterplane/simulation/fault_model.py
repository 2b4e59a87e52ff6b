"""The seeded fault model of the simulated fleet, pure: which faults, how often, and when.

Default rates follow Meta's Llama 3 report (Dubey et al., 2024, table 5): 419 unexpected
interruptions in 54 days on 16,384 H100 GPUs, that is 3.79e-3 per 8-GPU host per day,
about 78% hardware. `FAULT_MIX` splits that rate by cause (faulty GPU, HBM3 memory,
software, network, host maintenance, GSP, NIC, NCCL timeouts, thermal); each entry says
what the host's agent would report, the weakest repair that fixes it, and for transient
faults how long they last before clearing by themselves.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from clusterplane.domain.health import Action, EventKind

INTERRUPTIONS_PER_HOST_DAY = 419 / 54 / (16384 / 8)


@dataclass(frozen=True)
class FaultSpec:
    kind: EventKind
    code: int | None
    fixed_by: Action
    transient_seconds: float | None = None  # None: stays until repaired


@dataclass(frozen=True)
class FaultMixEntry:
    share: float
    fault: FaultSpec
    cause: str


K, A = EventKind, Action
FAULT_MIX: tuple[FaultMixEntry, ...] = (
    FaultMixEntry(0.100, FaultSpec(K.XID, 79, A.REPLACE), "faulty GPU: fell off the bus"),
    FaultMixEntry(0.100, FaultSpec(K.XID, 94, A.GPU_RESET), "faulty GPU: contained ECC"),
    FaultMixEntry(0.101, FaultSpec(K.XID, 74, A.REBOOT), "faulty GPU: NVLink"),
    FaultMixEntry(0.110, FaultSpec(K.ECC, None, A.REBOOT), "GPU HBM3 memory"),
    FaultMixEntry(0.062, FaultSpec(K.ROW_REMAP, None, A.REPLACE), "GPU HBM3 row remap"),
    FaultMixEntry(0.045, FaultSpec(K.ECC, None, A.REBOOT), "GPU SRAM memory"),
    FaultMixEntry(0.129, FaultSpec(K.XID, 13, A.NONE, 60.0), "software bug"),
    FaultMixEntry(0.084, FaultSpec(K.IB_LINK_FLAP, None, A.REPLACE, 600.0), "network switch/cable"),
    FaultMixEntry(0.076, FaultSpec(K.HEARTBEAT_LOSS, None, A.REBOOT), "host maintenance"),
    FaultMixEntry(0.041, FaultSpec(K.XID, 119, A.REBOOT), "GPU system processor"),
    FaultMixEntry(0.017, FaultSpec(K.IB_LINK_FLAP, None, A.REPLACE), "NIC"),
    FaultMixEntry(0.017, FaultSpec(K.NVLINK, None, A.REBOOT), "NCCL watchdog timeouts"),
    FaultMixEntry(0.014, FaultSpec(K.THERMAL, None, A.REPLACE, 1200.0), "GPU thermal"),
    FaultMixEntry(0.030, FaultSpec(K.PCIE, None, A.REPLACE), "PCIe"),
)


@dataclass(frozen=True)
class ScheduledFault:
    at_seconds: float
    host: str
    fault: FaultSpec


def schedule(
    seed: int, hosts: list[str], *, days: float, rate_multiplier: float = 1.0
) -> list[ScheduledFault]:
    """Faults over `days` on `hosts` (a Poisson process), the same for the same inputs."""
    if not hosts or days <= 0:
        return []
    digest = hashlib.sha256(f"faults:{seed}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    per_second = len(hosts) * INTERRUPTIONS_PER_HOST_DAY * rate_multiplier / 86400.0
    weights = [e.share for e in FAULT_MIX]
    horizon = days * 86400.0
    at = rng.expovariate(per_second)
    out: list[ScheduledFault] = []
    while at < horizon:
        entry = rng.choices(FAULT_MIX, weights)[0]
        out.append(ScheduledFault(round(at, 3), rng.choice(hosts), entry.fault))
        at += rng.expovariate(per_second)
    return out

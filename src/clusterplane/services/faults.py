"""The simulated fleet's faults: injected or drawn from the seeded model, reported by the
simulated node agent, fixed by repairs.

A `HostFaultRow` is ground truth about a simulated host. The fault controller plays the
host's agent: when a fault's time comes it reports the signal through `health.ingest_event`
(source "simulated"), and a transient fault, when it clears by itself, resolves it. A
repair in place fixes the faults a reboot fixes (`apply_repair`); a quarantined host's
hardware repair fixes them all (`repair_host`). Active checks read the open faults.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import HealthEventRow, HostFaultRow, HostRow
from clusterplane.domain.enums import RemediationMode
from clusterplane.domain.fault_model import FaultSpec
from clusterplane.domain.health import ACTION_STRENGTH, Action, EventKind
from clusterplane.providers.simulated.checks import Fault
from clusterplane.services import health, recovery
from clusterplane.services.ids import new_uuid
from clusterplane.settings import Settings

# What a repair in place fixes: the strongest fault action it clears.
FIXES: dict[RemediationMode, Action] = {
    RemediationMode.REBOOT_VM: Action.GPU_RESET,
    RemediationMode.HOST_POWER_CYCLE: Action.REBOOT,
    RemediationMode.VM_ONLY: Action.REBOOT,
}


def inject_fault(session: Session, host: HostRow, spec: FaultSpec, at: datetime) -> HostFaultRow:
    row = HostFaultRow(
        id=new_uuid(),
        host_id=host.id,
        kind=spec.kind,
        code=spec.code,
        fixed_by=spec.fixed_by,
        injected_at=at,
        clears_at=at + timedelta(seconds=spec.transient_seconds)
        if spec.transient_seconds is not None
        else None,
        next_reconcile_at=at,
    )
    session.add(row)
    return row


def advance_fault(session: Session, settings: Settings, fault: HostFaultRow, now: datetime) -> None:
    """The simulated agent's view of one fault: report it, and report it clearing."""
    fault.next_reconcile_at = None
    if fault.cleared_at is not None:
        _resolve_reported(session, fault, now, "the fault was repaired")
        return
    if fault.event_id is None:
        host = session.get(HostRow, fault.host_id)
        if host is None:
            return
        event = health.ingest_event(
            session,
            settings,
            host,
            health.Signal(
                kind=EventKind(fault.kind),
                code=fault.code,
                source="simulated",
                observed_at=fault.injected_at,
            ),
            now,
        )
        fault.event_id = event.id
    if fault.clears_at is not None:
        if now >= fault.clears_at:
            fault.cleared_at = now
            _resolve_reported(session, fault, now, "the signal cleared")
        else:
            fault.next_reconcile_at = fault.clears_at


def _resolve_reported(session: Session, fault: HostFaultRow, now: datetime, why: str) -> None:
    event = session.get(HealthEventRow, fault.event_id) if fault.event_id else None
    if event is not None:
        recovery.resolve_events(session, [event], now, why=why)


def open_faults(session: Session, host_id: str, now: datetime) -> list[Fault]:
    rows = session.scalars(
        select(HostFaultRow).where(
            HostFaultRow.host_id == host_id,
            HostFaultRow.cleared_at.is_(None),
            HostFaultRow.injected_at <= now,
        )
    )
    return [Fault(r.kind, r.code) for r in rows]


def _clear(session: Session, host_id: str, strongest: Action, now: datetime) -> int:
    cleared = 0
    for row in session.scalars(
        select(HostFaultRow).where(
            HostFaultRow.host_id == host_id,
            HostFaultRow.cleared_at.is_(None),
            HostFaultRow.injected_at <= now,
        )
    ):
        if ACTION_STRENGTH[Action(row.fixed_by)] <= ACTION_STRENGTH[strongest]:
            row.cleared_at = now
            cleared += 1
    return cleared


def apply_repair(session: Session, host_id: str, mode: RemediationMode, now: datetime) -> int:
    """A reboot or re-provision in place fixes the faults it can; returns how many."""
    fixes = FIXES.get(mode)
    return _clear(session, host_id, fixes, now) if fixes is not None else 0


def repair_host(session: Session, host_id: str, now: datetime) -> int:
    """Hardware repair of a quarantined host (parts replaced): every fault is fixed."""
    return _clear(session, host_id, Action.REPLACE, now)

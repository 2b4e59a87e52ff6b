"""The simulated fleet's faults: injected or drawn from the seeded model, reported by the
simulated node agent, fixed by repairs.

A `HostFaultRow` is ground truth about a simulated host. The fault controller plays the
host's agent: when a fault's time comes it reports the signal through `health.ingest_event`
(source "simulated"), and a transient fault, when it clears by itself, resolves it.
`FaultLedger` is the simulated host driver's view of them (`simulation.hosts.FaultView`),
each call its own transaction, as a driver's calls are outside the controllers': active
checks measure the open faults, a reboot or a wipe fixes the faults it can, the hardware
repair of a quarantined host fixes them all.

The open faults of the whole fleet are read at once and kept while the fleet time asked
about and `FAULT_WRITES` (the committed transactions of this process that wrote a fault)
stay the same: the five acceptance checks of every worker of a cluster under test, all
asked at one pass's time, cost one read instead of one each (10,240 for 16,384 GPUs).
Another process's fault writes are seen at the next fleet time asked about.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Mapper, Session, object_session, sessionmaker

from clusterplane.db.engine import transaction
from clusterplane.db.prepared import Prepared, read_once
from clusterplane.db.rows import HealthEventRow, HostRow
from clusterplane.db.writes import WriteCounter
from clusterplane.domain.health import ACTION_STRENGTH, Action, EventKind
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.health import health, recovery
from clusterplane.settings import Settings
from clusterplane.simulation.checks import Fault
from clusterplane.simulation.fault_model import FaultSpec
from clusterplane.simulation.rows import HostFaultRow


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


def _open(session: Session, host_name: str, now: datetime) -> list[HostFaultRow]:
    return list(
        session.scalars(
            select(HostFaultRow)
            .join(HostRow, HostRow.id == HostFaultRow.host_id)
            .where(
                HostRow.name == host_name,
                HostFaultRow.cleared_at.is_(None),
                HostFaultRow.injected_at <= now,
            )
        )
    )


def clear_faults(session: Session, host_name: str, fixes: Action, now: datetime) -> int:
    """Clear the open faults a repair as strong as `fixes` fixes; returns how many."""
    cleared = 0
    for row in _open(session, host_name, now):
        if ACTION_STRENGTH[Action(row.fixed_by)] <= ACTION_STRENGTH[fixes]:
            row.cleared_at = now
            cleared += 1
    return cleared


FAULT_WRITES = WriteCounter()
_WROTE_FAULTS = "clusterplane_wrote_faults"


@event.listens_for(HostFaultRow, "after_insert")
@event.listens_for(HostFaultRow, "after_update")
@event.listens_for(HostFaultRow, "after_delete")
def _wrote_fault(_mapper: Mapper[Any], _connection: Any, row: HostFaultRow) -> None:
    session = object_session(row)
    if session is not None:
        session.info[_WROTE_FAULTS] = True


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # Counted after the commit: a read that saw the old count re-reads at its next call.
    if session.info.pop(_WROTE_FAULTS, False):
        FAULT_WRITES.bump()


# What active checks measure: every open fault of the fleet at a time, by host name.
_OPEN_FAULTS: Prepared[tuple[str, str, int | None]] = Prepared(
    select(HostRow.name, HostFaultRow.kind, HostFaultRow.code)
    .join(HostRow, HostRow.id == HostFaultRow.host_id)
    .where(HostFaultRow.cleared_at.is_(None), HostFaultRow.injected_at <= bindparam("now")),
    tuple,
)


class FaultLedger:
    """The simulated host driver's view of the faults, one transaction per call."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        # ((fleet time, FAULT_WRITES count), the open faults then by host name)
        self._read: tuple[tuple[datetime, int], dict[str, list[Fault]]] | None = None

    def open_faults(self, host_name: str, now: datetime) -> list[Fault]:
        return list(self._open_at(now).get(host_name, ()))

    def repair(self, host_name: str, fixes: Action, now: datetime) -> int:
        if not self.open_faults(host_name, now):  # most hosts: no write transaction at all
            return 0
        with transaction(self.sessions) as session:
            return clear_faults(session, host_name, fixes, now)

    def _open_at(self, now: datetime) -> dict[str, list[Fault]]:
        key = (now, FAULT_WRITES.value)  # the count before the read: a later write re-reads
        read = self._read
        if read is not None and read[0] == key:
            return read[1]
        found: dict[str, list[Fault]] = {}
        for host_name, kind, code in read_once(self.sessions, _OPEN_FAULTS, now=now):
            found.setdefault(host_name, []).append(Fault(kind, code))
        self._read = (key, found)
        return found

"""The simulated host driver's view of the faults (`simulation.faults.FaultLedger`).

Active checks read every host's open faults at once, once per fleet time; a fault written
at that same time is still seen by the next read, and a repair's clearing too.
"""

from __future__ import annotations

from sqlalchemy import select

from clusterplane.db.engine import transaction
from clusterplane.db.prepared import watch_statements
from clusterplane.db.rows import HostRow
from clusterplane.domain.health import Action, EventKind
from clusterplane.simulation import faults
from clusterplane.simulation.checks import Fault
from clusterplane.simulation.fault_model import FaultSpec
from tests.support.engine import Engine


def _host_names(engine: Engine, count: int) -> list[str]:
    with transaction(engine.app.sessions) as session:
        return list(session.scalars(select(HostRow.name).order_by(HostRow.name).limit(count)))


def _inject(engine: Engine, host_name: str, kind: EventKind, fixed_by: Action) -> None:
    with transaction(engine.app.sessions) as session:
        host = session.scalars(select(HostRow).where(HostRow.name == host_name)).one()
        faults.inject_fault(session, host, FaultSpec(kind, None, fixed_by), engine.clock.now())


def test_the_checks_of_many_hosts_at_one_fleet_time_read_the_faults_once(engine: Engine):
    names = _host_names(engine, 3)
    _inject(engine, names[1], EventKind.NVLINK, Action.REBOOT)
    ledger = faults.FaultLedger(engine.app.sessions)
    now = engine.clock.now()
    seen: list[str] = []
    with watch_statements(engine.app.engine, seen.append):
        found = [ledger.open_faults(name, now) for name in names * 2]
    assert found == [[], [Fault("nvlink", None)], []] * 2
    assert len(seen) == 1


def test_a_fault_written_at_the_same_fleet_time_is_seen_by_the_next_check(engine: Engine):
    [name] = _host_names(engine, 1)
    ledger = faults.FaultLedger(engine.app.sessions)
    now = engine.clock.now()
    assert ledger.open_faults(name, now) == []
    _inject(engine, name, EventKind.IB_LINK_FLAP, Action.REBOOT)
    assert ledger.open_faults(name, now) == [Fault("ib_link_flap", None)]
    assert ledger.repair(name, Action.REBOOT, now) == 1
    assert ledger.open_faults(name, now) == []

"""What `app` plugs in for the simulated fleet: its drivers, its fault agent, its fault API."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from clusterplane.controllers.base import ControllerContext
from clusterplane.controllers.health import RowStepController
from clusterplane.domain.enums import ClusterType
from clusterplane.providers.registry import Drivers
from clusterplane.settings import Settings
from clusterplane.simulation import faults
from clusterplane.simulation.flavour import SimulatedFlavour
from clusterplane.simulation.hosts import SimulatedHostDriver
from clusterplane.simulation.rows import HostFaultRow
from clusterplane.simulation.storage import SimulatedStorage

HOST_DRIVER = SimulatedHostDriver.name


def simulated_drivers(settings: Settings, sessions: sessionmaker[Session]) -> Drivers:
    """The embedded default: every host, cluster type and region simulated."""
    seed, factor = settings.simulation.seed, settings.simulation.duration_factor
    hosts = SimulatedHostDriver(
        seed=seed, duration_factor=factor, faults=faults.FaultLedger(sessions)
    )
    flavour = SimulatedFlavour(seed=seed, duration_factor=factor)
    return Drivers(
        hosts={HOST_DRIVER: hosts},
        flavours={t.value: flavour for t in ClusterType},
        storage=SimulatedStorage(seed=seed, duration_factor=factor),
    )


def fault_controller(ctx: ControllerContext) -> RowStepController:
    """The simulated hosts' agents: report each fault when its time comes, and its clearing."""
    return RowStepController(ctx, name="faults", row_type=HostFaultRow, step=faults.advance_fault)

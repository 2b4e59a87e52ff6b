"""Composition root: `build(settings)` wires database, fleet, drivers, controllers and API.

Nothing else constructs engines, clocks or drivers. The drivers are the simulated fleet's
(`simulation.wiring`) unless the caller passes a `DriverFactory` (given the session
factory, as drivers that keep their ground truth in the database need it); whenever the
simulated host driver is among them, the simulation's fault agent and fault API are
plugged in too.
This is the only module that imports `clusterplane.simulation`. Tests call `build` with a
manual clock and `run_controllers=False`, then step the engine with
`manager.run_until_idle()`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from fastapi import Depends, FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from clusterplane import __version__
from clusterplane.api import errors, openapi
from clusterplane.api.deps import request_text_has_no_nul
from clusterplane.api.read_cache import ReadCache
from clusterplane.api.routers import (
    admin,
    admin_capacity,
    admin_credentials,
    admin_fleet,
    admin_quotas,
    clusters,
    health,
    regions,
    remediations,
    ssh,
    storage,
    whoami,
)
from clusterplane.api.state import ApiState
from clusterplane.clock import Clock, SystemClock
from clusterplane.controllers.base import ControllerContext
from clusterplane.controllers.manager import ControllerManager
from clusterplane.db.engine import make_engine, make_session_factory, migrate, transaction
from clusterplane.db.group_commit import GroupCommit
from clusterplane.db.writes import count_writes
from clusterplane.providers.registry import Drivers
from clusterplane.services import auth, check_runs, fleet, fleet_clock
from clusterplane.services.sealing import SecretBox
from clusterplane.settings import Settings
from clusterplane.simulation import api as simulation_api
from clusterplane.simulation import wiring as simulation

log = logging.getLogger(__name__)
DriverFactory = Callable[[sessionmaker[Session]], Drivers]


@dataclass
class Application:
    api: FastAPI
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    manager: ControllerManager
    issued_admin_key: str | None


def _resume_clock(sessions: sessionmaker[Session], settings: Settings) -> Clock:
    with transaction(sessions) as session:
        return fleet_clock.resume_clock(
            session, time_scale=settings.simulation.time_scale, wall_now=datetime.now(UTC)
        )


def _prepare_database(
    sessions: sessionmaker[Session], settings: Settings, clock: Clock
) -> str | None:
    fleet_spec = fleet.load_fleet_file(settings.fleet_file)
    with transaction(sessions) as session:
        report = fleet.sync_fleet(
            session,
            fleet_spec,
            clock.now(),
            allow_cross_fabric=settings.placement.allow_cross_fabric,
        )
        issued = auth.bootstrap_admin_key(session, now=clock.now(), key=settings.admin_api_key)
        check_runs.ensure_idle_schedule(session, settings, clock.now())
    log.info(
        "fleet synced: %s added, %s updated, %s retired",
        report.added,
        report.updated,
        report.retired,
    )
    return issued.secret if issued is not None else None


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    drivers: DriverFactory | None = None,
    lease_clock: Clock | None = None,
) -> Application:
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    clock = clock or _resume_clock(sessions, settings)
    issued = _prepare_database(sessions, settings, clock)
    registry = (drivers or partial(simulation.simulated_drivers, settings))(sessions)
    simulated = registry.uses(simulation.HOST_DRIVER)
    ctx = ControllerContext(
        sessions=sessions,
        clock=clock,
        drivers=registry,
        settings=settings,
        lease_clock=lease_clock or SystemClock(),
    )
    manager = ControllerManager(
        ctx, signals=[simulation.fault_controller(ctx)] if simulated else []
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.run_controllers:
            manager.start()
        try:
            yield
        finally:
            manager.stop()
            engine.dispose()

    api = FastAPI(
        title="clusterplane",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(request_text_has_no_nul)],
    )
    api.state.cp = ApiState(
        sessions=sessions,
        clock=clock,
        settings=settings,
        nudge=manager.nudge,
        secrets=SecretBox.from_settings(settings.credentials),
        health_reports=GroupCommit(
            sessions, health.report_writer(settings, clock), name="health-reports"
        ),
        writes=count_writes(sessions),
        reads=ReadCache(settings.server.read_cache_seconds),
    )
    errors.install(api)
    openapi.install(api)
    for prefix, visible in (("/v1", True), ("/v1/v1", False)):
        for router in (storage.router, clusters.router, remediations.router, regions.router):
            api.include_router(
                router,
                prefix=prefix,
                include_in_schema=visible,
                responses=openapi.ERROR_RESPONSES,
            )
    api.include_router(whoami.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(whoami.router, prefix="/v1", include_in_schema=False)
    api.include_router(ssh.router, prefix="/v1", responses=openapi.ERROR_RESPONSES)
    api.include_router(admin.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin_capacity.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin_credentials.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin_fleet.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin_quotas.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(health.router, responses=openapi.ERROR_RESPONSES)
    if simulated:
        api.include_router(simulation_api.router, responses=openapi.ERROR_RESPONSES)

    @api.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return Application(
        api=api,
        engine=engine,
        sessions=sessions,
        clock=clock,
        manager=manager,
        issued_admin_key=issued,
    )

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
from pathlib import Path

from fastapi import Depends, FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from clusterplane import __version__
from clusterplane.api import errors, inflight, openapi
from clusterplane.api.console_stream import StreamSlots
from clusterplane.api.deps import request_checks
from clusterplane.api.long_polls import LongPolls
from clusterplane.api.read_cache import ReadCache
from clusterplane.api.request_ids import RequestIds
from clusterplane.api.request_metrics import RequestMetrics
from clusterplane.api.routers import (
    admin,
    admin_agents,
    admin_capacity,
    admin_credentials,
    admin_fleet,
    admin_quotas,
    agents,
    clusters,
    console,
    console_assets,
    events,
    health,
    metrics,
    probes,
    regions,
    remediations,
    ssh,
    storage,
    webhooks,
    whoami,
)
from clusterplane.api.state import ApiState
from clusterplane.clock import Clock, SystemClock
from clusterplane.controllers.base import ControllerContext
from clusterplane.controllers.manager import ControllerManager
from clusterplane.controllers.webhooks import WebhookDispatcher
from clusterplane.db.engine import (
    make_engine,
    make_session_factory,
    migrate,
    read_transaction,
    transaction,
)
from clusterplane.db.group_commit import GroupCommit
from clusterplane.db.loop_reads import LoopReader
from clusterplane.db.writes import count_writes
from clusterplane.metrics import Metrics
from clusterplane.providers.agent import AgentHostDriver
from clusterplane.providers.kubernetes import AgentKubernetesFlavour
from clusterplane.providers.registry import Drivers
from clusterplane.providers.shared_directory import SharedDirectoryStorage
from clusterplane.providers.slurm.flavour import AgentSlurmFlavour
from clusterplane.services.access import auth
from clusterplane.services.access.caller_cache import CallerCache
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.agents import host_assignments
from clusterplane.services.capacity import fleet, fleet_clock
from clusterplane.services.capacity.fleet_metrics import FleetCollector, Queue
from clusterplane.services.clusters import cluster_secrets
from clusterplane.services.events import metrics_feed
from clusterplane.services.health import check_runs
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
    # What a host driver for agent hosts publishes and observes through (its port).
    agent_hosts: host_assignments.AssignmentPort
    # The instruments `GET /metrics` shows (counted even with `metrics.enabled` off).
    metrics: Metrics


def _resume_clock(sessions: sessionmaker[Session], settings: Settings) -> Clock:
    with transaction(sessions) as session:
        return fleet_clock.resume_clock(
            session, time_scale=settings.simulation.time_scale, wall_now=datetime.now(UTC)
        )


def _prepare_database(
    sessions: sessionmaker[Session],
    settings: Settings,
    clock: Clock,
    box: SecretBox,
    wall_clock: Clock,
) -> str | None:
    """Sync the fleet, check the credentials key, ensure an admin key; returns a key the
    server generated (to show once), or None."""
    fleet_spec = fleet.load_fleet_file(settings.fleet_file)
    with transaction(sessions) as session:
        cluster_secrets.check_server_key(session, box)
        report = fleet.sync_fleet(
            session,
            fleet_spec,
            clock.now(),
            allow_cross_fabric=settings.placement.allow_cross_fabric,
        )
        auth.ensure_default_tenancy(session, clock.now())
        issued = auth.bootstrap_admin_key(
            session, now=wall_clock.now(), key=settings.admin_api_key, lookup_keys=box.lookup_keys
        )
        check_runs.ensure_idle_schedule(session, settings, clock.now())
    log.info(
        "fleet synced: %s added, %s updated, %s retired",
        report.added,
        report.updated,
        report.retired,
    )
    return issued.secret if issued is not None else None


def shared_directory_storage(settings: Settings) -> dict[str, SharedDirectoryStorage]:
    """The regions whose volumes are directories of a shared filesystem (`REGION=PATH`)."""
    found: dict[str, SharedDirectoryStorage] = {}
    for entry in settings.storage.shared_directories:
        region, _, root = entry.partition("=")
        found[region] = SharedDirectoryStorage(
            Path(root), quotas=settings.storage.shared_directory_quotas
        )
    return found


def _generations_reader(sessions: sessionmaker[Session]) -> Callable[[list[str]], dict[str, int]]:
    def read(host_ids: list[str]) -> dict[str, int]:
        with read_transaction(sessions) as session:
            return host_assignments.generations(session, host_ids)

    return read


def _expose_metrics(
    metrics: Metrics,
    settings: Settings,
    sessions: sessionmaker[Session],
    manager: ControllerManager,
) -> Metrics | None:
    """`metrics` with the row feed and the fleet collector plugged in, for `GET /metrics`;
    None when metrics are off (the controllers still count into it, unseen)."""
    if not settings.metrics.enabled:
        return None
    metrics_feed.install(sessions, metrics)
    fleet = FleetCollector(
        sessions,
        clock=manager.ctx.clock,
        lease_clock=manager.ctx.lease_clock,
        queues=[Queue(c.name, c.row_type) for c in manager.controllers],
        cache_seconds=settings.metrics.cache_seconds,
    )
    metrics.registry.register(fleet)
    return metrics


def build(
    settings: Settings,
    *,
    clock: Clock | None = None,
    drivers: DriverFactory | None = None,
    lease_clock: Clock | None = None,
    wall_clock: Clock | None = None,
) -> Application:
    """`clock` is fleet time; `wall_clock` real time, for certificates and key expiry."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    clock = clock or _resume_clock(sessions, settings)
    box = SecretBox.from_settings(settings.credentials)
    wall_clock = wall_clock or SystemClock()
    try:
        issued = _prepare_database(sessions, settings, clock, box, wall_clock)
    except BaseException:
        engine.dispose()
        raise
    registry = (drivers or partial(simulation.simulated_drivers, settings))(sessions)
    registry.storage_by_region.update(shared_directory_storage(settings))
    assignments = host_assignments.AssignmentPort(sessions, box, clock)
    registry.hosts.setdefault(AgentHostDriver.name, AgentHostDriver(assignments))
    registry.flavours_by_host.setdefault(
        AgentHostDriver.name,
        {
            "SLURM": AgentSlurmFlavour(assignments, settings.slurm),
            "KUBERNETES": AgentKubernetesFlavour(assignments, settings.kubernetes),
        },
    )
    simulated = registry.uses(simulation.HOST_DRIVER)
    instruments = Metrics()  # this application's own registry
    ctx = ControllerContext(
        sessions=sessions,
        clock=clock,
        drivers=registry,
        settings=settings,
        lease_clock=lease_clock or SystemClock(),
        metrics=instruments,
    )
    manager = ControllerManager(
        ctx,
        signals=[simulation.fault_controller(ctx)] if simulated else [],
        webhooks=WebhookDispatcher(ctx, box, wall_clock),
    )
    exposed = _expose_metrics(instruments, settings, sessions, manager)
    loop_reads = LoopReader(engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.run_controllers:
            manager.start()
        try:
            yield
        finally:
            manager.stop()
            loop_reads.close()
            engine.dispose()

    api = FastAPI(
        title="clusterplane",
        version=__version__,
        lifespan=lifespan,
        # /openapi.json and /docs are served by `openapi.install` (admin routes only to
        # admin keys); no trailing-slash redirect, whose Location would echo `Host`.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        dependencies=[Depends(request_checks)],
    )
    api.state.cp = ApiState(
        sessions=sessions,
        clock=clock,
        settings=settings,
        nudge=manager.nudge,
        secrets=box,
        wall_clock=wall_clock,
        callers=CallerCache(settings.server.caller_cache_seconds),
        health_reports=GroupCommit(
            sessions, health.report_writer(settings, clock), name="health-reports"
        ),
        agent_health=GroupCommit(
            sessions, agents.report_writer(settings, clock), name="agent-health"
        ),
        writes=count_writes(sessions),
        reads=ReadCache(settings.server.read_cache_seconds),
        loop_reads=loop_reads,
        inflight=inflight.InFlight(settings.server.max_inflight_per_key),
        agent_inflight=inflight.InFlight(settings.agents.max_inflight_per_host),
        long_polls=LongPolls(
            limit=settings.agents.max_long_polls,
            recheck_seconds=settings.agents.long_poll_recheck_seconds,
            read_generations=_generations_reader(sessions),
        ),
        metrics=exposed,
        streams=StreamSlots(
            per_key=settings.console.max_streams_per_key, total=settings.console.max_streams
        ),
    )
    # A request is matched against the routes and routers in this order, each router a
    # scan of its routes, so the hottest come first (probes, GET of a cluster, then the
    # clusters router); no two routers match one path, but for GET and POST of a cluster,
    # whose plain routes serve what the router's routes document.
    api.router.routes.append(probes.healthz)
    for prefix in ("/v1", "/v1/v1"):
        api.router.routes += [clusters.retrieve_route(prefix), clusters.create_route(prefix)]
    errors.install(api)
    openapi.install(api)
    api.include_router(probes.router)
    for prefix, visible in (("/v1", True), ("/v1/v1", False)):
        for router in (clusters.router, storage.router, remediations.router, regions.router):
            api.include_router(
                router,
                prefix=prefix,
                include_in_schema=visible,
                responses=openapi.ERROR_RESPONSES,
            )
    api.include_router(whoami.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(whoami.router, prefix="/v1", include_in_schema=False)
    api.include_router(ssh.router, prefix="/v1", responses=openapi.ERROR_RESPONSES)
    api.include_router(events.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(webhooks.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin_capacity.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin_credentials.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin_fleet.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(admin_quotas.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(health.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(console.router)
    if settings.console.enabled:
        api.include_router(console_assets.router)
    api.add_middleware(inflight.ReleaseSlots)
    api.include_router(admin_agents.router, responses=openapi.ERROR_RESPONSES)
    api.include_router(agents.router, responses=openapi.ERROR_RESPONSES)
    if exposed is not None:
        api.include_router(metrics.router, responses=openapi.ERROR_RESPONSES)
        api.add_middleware(RequestMetrics, metrics=exposed)
    api.add_middleware(RequestIds)  # outermost: every response has an id, every request a line
    if simulated:
        api.include_router(simulation_api.router, responses=openapi.ERROR_RESPONSES)

    state: ApiState = api.state.cp
    assignments.announce = state.long_polls.announce
    return Application(
        api=api,
        engine=engine,
        sessions=sessions,
        clock=clock,
        manager=manager,
        issued_admin_key=issued,
        agent_hosts=assignments,
        metrics=instruments,
    )

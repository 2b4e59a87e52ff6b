"""An in-process engine on a manual clock: the API through a test client, controllers
stepped by hand, so timing and failure tests are deterministic and fast."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.app import Application, DriverFactory, build
from clusterplane.clock import Clock, ManualClock, SystemClock
from clusterplane.db.engine import transaction
from clusterplane.db.rows import HostRow
from clusterplane.providers.registry import Drivers
from clusterplane.services.access.auth import generate_key_text
from clusterplane.settings import (
    CapacitySettings,
    CredentialSettings,
    EngineSettings,
    HealthSettings,
    MetricsSettings,
    Settings,
    SimulationSettings,
    StorageSettings,
    WebhookSettings,
)
from clusterplane.simulation.wiring import simulated_drivers
from tests.support.databases import fresh_database_url

TEST_CREDENTIALS_KEY = "clusterplane-test-suite-credentials-key-not-secret"
"""The server key every test engine and server seals credentials with (restarts read them)."""

SMALL_FLEET = Path(__file__).resolve().parents[2] / "src/clusterplane/fleets/small.yaml"
WHOLE_REGION = CapacitySettings(default_preemptible_share=1.0, default_storage_share=1.0)
"""Capacity settings that let one project use a whole region: for tests of the region's
own limits rather than the per-project ones."""


def instant_drivers(sessions: sessionmaker[Session]) -> Drivers:
    """The simulated drivers with every step done the moment it starts
    (`duration_factor = 0`): what is left of a bring-up is the controllers' passes."""
    settings = Settings(simulation=SimulationSettings(duration_factor=0))
    return simulated_drivers(settings, sessions)


@dataclass
class Engine:
    app: Application
    clock: ManualClock  # fleet time
    client: TestClient
    admin_key: str
    database_url: str
    # real time: certificates, key expiry (a ManualClock when a test asks for one)
    wall_clock: Clock = field(default_factory=SystemClock)

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def advance(self, seconds: float, step: float = 5.0) -> None:
        """Move fleet time forward in `step`s, letting the controllers act at each."""
        remaining = seconds
        self.app.manager.run_until_idle()
        while remaining > 0:
            delta = min(step, remaining)
            self.clock.advance(delta)
            remaining -= delta
            self.app.manager.run_until_idle()

    def host_owners(self) -> dict[str, str | None]:
        with transaction(self.app.sessions) as session:
            return {h.name: h.cluster_id for h in session.scalars(select(HostRow))}

    def table_counts(self) -> dict[str, int]:
        """Rows per table, to show that a refused request changed nothing."""
        names = inspect(self.app.engine).get_table_names()
        with self.app.engine.connect() as conn:
            return {
                n: int(conn.execute(text(f'SELECT COUNT(*) FROM "{n}"')).scalar_one())
                for n in names
                if n != "alembic_version"
            }

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, to compare the database before and after."""
        names = inspect(self.app.engine).get_table_names()
        with self.app.engine.connect() as conn:
            return {
                n: sorted(tuple(map(str, r)) for r in conn.execute(text(f'SELECT * FROM "{n}"')))
                for n in names
            }


def make_engine(
    tmp_path: Path,
    *,
    fleet: Path | None = SMALL_FLEET,
    acceptance_tests: bool = True,
    database_url: str | None = None,
    admin_key: str | None = None,
    credentials_key: str = TEST_CREDENTIALS_KEY,
    previous_credentials_keys: tuple[str, ...] = (),
    health: HealthSettings | None = None,
    wall_clock: Clock | None = None,
    lease_clock: Clock | None = None,
    capacity: CapacitySettings | None = None,
    drivers: DriverFactory | None = None,
    metrics: MetricsSettings | None = None,
    storage: StorageSettings | None = None,
    webhooks: WebhookSettings | None = None,
) -> Iterator[Engine]:
    """An engine on a new database, or on `database_url` (a restart) with `admin_key`,
    on the simulated drivers unless `drivers` makes others.

    Fleet time is a `ManualClock`; wall time is the system's unless `wall_clock` is given,
    and so is the controllers' (leases, the agent silence scan) unless `lease_clock` is.
    """
    key = admin_key or generate_key_text()
    settings = Settings(
        database_url=database_url or fresh_database_url(tmp_path, "engine.db"),
        fleet_file=fleet,
        admin_api_key=key,
        run_controllers=False,
        engine=EngineSettings(acceptance_tests_by_default=acceptance_tests),
        credentials=CredentialSettings(
            key=credentials_key, previous_keys=previous_credentials_keys
        ),
        health=health or HealthSettings(),
        capacity=capacity or CapacitySettings(),
        metrics=metrics or MetricsSettings(),
        storage=storage or StorageSettings(),
        webhooks=webhooks or WebhookSettings(),
    )
    clock = ManualClock()
    wall = wall_clock or SystemClock()
    app = build(settings, clock=clock, wall_clock=wall, lease_clock=lease_clock, drivers=drivers)
    with TestClient(app.api) as client:
        yield Engine(
            app=app,
            clock=clock,
            client=client,
            admin_key=key,
            database_url=settings.database_url,
            wall_clock=wall,
        )


def new_tenant(engine: Engine, name: str) -> tuple[str, str]:
    """A new project with a member's API key, made over the admin API: (project id, key)."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = engine.client.post(f"/admin/v1/{path}", json=body, headers=engine.headers())
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    user = post("users", {"name": name})["id"]
    project = post("projects", {"name": name, "slug": name})["id"]
    key = post("api-keys", {"user_id": user, "project_id": project})["api_key"]
    return project, str(key)

"""An in-process engine on a manual clock: the API through a test client, controllers
stepped by hand, so timing and failure tests are deterministic and fast."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import inspect, select, text

from clusterplane.app import Application, DriverFactory, build
from clusterplane.clock import ManualClock
from clusterplane.db.engine import transaction
from clusterplane.db.rows import HostRow
from clusterplane.services.auth import generate_key_text
from clusterplane.settings import CredentialSettings, EngineSettings, HealthSettings, Settings
from tests.support.databases import fresh_database_url

TEST_CREDENTIALS_KEY = "clusterplane-test-suite-credentials-key-not-secret"
"""The server key every test engine and server seals credentials with (restarts read them)."""

SMALL_FLEET = Path(__file__).resolve().parents[2] / "src/clusterplane/fleets/small.yaml"


@dataclass
class Engine:
    app: Application
    clock: ManualClock
    client: TestClient
    admin_key: str
    database_url: str

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
    drivers: DriverFactory | None = None,
) -> Iterator[Engine]:
    """An engine on a new database, or on `database_url` (a restart) with `admin_key`;
    on the simulated drivers unless `drivers` makes others."""
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
    )
    clock = ManualClock()
    app = build(settings, clock=clock, drivers=drivers)
    with TestClient(app.api) as client:
        yield Engine(
            app=app, clock=clock, client=client, admin_key=key, database_url=settings.database_url
        )

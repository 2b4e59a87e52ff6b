"""Which database the tests run on: SQLite (default) or PostgreSQL.

`CLUSTERPLANE_TEST_DATABASE=postgresql` runs every engine and server of the suite on a
fresh database of one throw-away PostgreSQL server per test process (started on first use,
stopped at exit); `make test` runs the suite once per backend.
"""

from __future__ import annotations

import atexit
import os
from pathlib import Path

from tests.support.postgres import PostgresServer

_shared: PostgresServer | None = None


def backend() -> str:
    value = os.environ.get("CLUSTERPLANE_TEST_DATABASE", "sqlite").strip().lower()
    if value not in ("sqlite", "postgresql"):
        raise RuntimeError(f"CLUSTERPLANE_TEST_DATABASE must be sqlite or postgresql: {value}")
    return value


def postgres() -> PostgresServer:
    global _shared
    if _shared is None:
        _shared = PostgresServer().start()
        atexit.register(_shared.stop)
    return _shared


def fresh_database_url(directory: Path, name: str = "clusterplane.db") -> str:
    """An empty database for one engine or server: a file in `directory`, or a new PG db."""
    if backend() == "postgresql":
        return postgres().new_database()
    return f"sqlite:///{directory / name}"

"""Database engine, sessions and schema migration for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on and a busy timeout, and every write
transaction starts with `BEGIN IMMEDIATE` so writers queue instead of failing on upgrade.
Its files (database, -wal, -shm) are the owner's alone (0600; SQLite gives the -wal and
-shm files the database file's mode), in a folder made 0700 (`private_dir`).
The schema is created only by Alembic migrations (`migrate()`), never by `create_all`; on
PostgreSQL they run under an advisory lock, so replicas starting at once migrate in turn.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.settings import DEFAULT_STATE_DIR

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
READ_ONLY = "clusterplane_read_only"
MIGRATION_LOCK_ID = 0x636C7573  # "clus": the advisory lock replicas take to migrate


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def normalize_url(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy's default driver is psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    # JSON columns are read on every list; orjson parses them several times faster.
    if is_sqlite(url):
        _ensure_sqlite_dir(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_deserializer=orjson.loads,
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, json_deserializer=orjson.loads
    )


def private_dir(path: Path) -> None:
    """`path` exists; made here, or named like the state folder, it is the owner's alone.

    Another existing folder (a database under /tmp or /var/lib) keeps its mode.
    """
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
        path.chmod(0o700)  # whatever the umask
    elif path.name == DEFAULT_STATE_DIR.name:
        path.chmod(0o700)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    database = Path(path)
    private_dir(database.parent)
    os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (database.name, database.name + "-wal", database.name + "-shm"):
        target = database.with_name(name)
        if target.exists():
            target.chmod(0o600)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Readers take a plain (deferred) BEGIN and run beside the writer under WAL.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


# One writer at a time per SQLite database in this process, queued fairly here: SQLite's
# own busy handler makes waiting writers sleep in growing steps (up to 100 ms), which
# turned a burst of concurrent writes (a failure storm's health events) into a long tail.
_SQLITE_WRITERS: dict[str, threading.RLock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()


def _writer_lock(factory: sessionmaker[Session]) -> threading.RLock | None:
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine) or bind.dialect.name != "sqlite":
        return None
    key = str(bind.url)
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(key, threading.RLock())


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any exception."""
    lock = _writer_lock(factory)
    with lock if lock is not None else nullcontext(), factory() as session, session.begin():
        yield session


@contextmanager
def read_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that only reads, from one consistent snapshot of the database.

    A response built from several queries (a cluster, its nodes, their events) must not
    mix states of a writer committing in between: PostgreSQL reads in REPEATABLE READ,
    SQLite in one deferred transaction (a WAL snapshot), which also lets readers run
    beside the single writer.
    """
    with factory() as session, session.begin():
        options: dict[str, Any] = {READ_ONLY: True}
        if session.get_bind().dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        session.connection(execution_options=options)
        yield session


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (safe to run on every start)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together migrate one at a time; the lock ends with the
            # transaction.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

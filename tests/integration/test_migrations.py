"""The schema comes from Alembic alone, and the migrations match the ORM rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from clusterplane.db.engine import make_engine, migrate
from clusterplane.db.rows import Base
from tests.support.databases import backend, fresh_database_url


def test_migrating_an_empty_database_creates_exactly_the_schema_of_the_rows(tmp_path: Path):
    engine = make_engine(fresh_database_url(tmp_path))
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrating_twice_is_a_no_op(tmp_path: Path):
    engine = make_engine(fresh_database_url(tmp_path))
    migrate(engine)
    tables = set(inspect(engine).get_table_names())
    migrate(engine)
    assert set(inspect(engine).get_table_names()) == tables
    assert {"clusters", "nodes", "hosts", "api_keys", "alembic_version"} <= tables


@pytest.mark.skipif(backend() != "sqlite", reason="a SQLite setting")
def test_the_sqlite_database_runs_in_wal_mode(tmp_path: Path):
    engine = make_engine(fresh_database_url(tmp_path))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"

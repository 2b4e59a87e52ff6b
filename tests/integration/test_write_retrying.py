"""An API write that another writer got in the way of runs again in a new transaction,
and is written once; any other error is raised at once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.retry import write_retrying


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = create_engine(f"sqlite:///{tmp_path / 'retry.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE writes (n INTEGER)"))
    return sessionmaker(bind=engine)


def _busy() -> OperationalError:
    return OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))


def _written(sessions: sessionmaker[Session]) -> list[int]:
    with sessions() as session:
        return [n for (n,) in session.execute(text("SELECT n FROM writes"))]


def test_a_write_that_met_a_busy_database_runs_again_and_is_written_once(sessions):
    tries: list[int] = []

    def work(session: Session) -> str:
        tries.append(1)
        session.execute(text("INSERT INTO writes VALUES (:n)"), {"n": len(tries)})
        if len(tries) == 1:
            raise _busy()  # after writing: the rollback must take the first attempt back
        return "done"

    assert write_retrying(sessions, work) == "done"
    assert len(tries) == 2
    assert _written(sessions) == [2]


def test_a_write_that_keeps_meeting_other_writers_gives_up_after_its_attempts(sessions):
    tries: list[int] = []

    def work(session: Session) -> None:
        tries.append(1)
        raise _busy()

    with pytest.raises(OperationalError):
        write_retrying(sessions, work, attempts=3)
    assert len(tries) == 3


def test_an_error_of_the_write_itself_is_raised_without_running_it_again(sessions):
    tries: list[int] = []

    def work(session: Session) -> None:
        tries.append(1)
        raise IntegrityError("INSERT", {}, sqlite3.IntegrityError("NOT NULL constraint failed"))

    with pytest.raises(IntegrityError):
        write_retrying(sessions, work)
    assert len(tries) == 1
    assert _written(sessions) == []

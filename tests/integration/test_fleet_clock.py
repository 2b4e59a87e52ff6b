"""The fleet clock's anchor: replicas agree, restarts continue, a new scale never rewinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.engine import make_engine, make_session_factory, migrate, transaction
from clusterplane.services.capacity.fleet_clock import resume_clock
from tests.support.databases import fresh_database_url


def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(fresh_database_url(tmp_path))
    migrate(engine)
    return make_session_factory(engine)


def test_two_replicas_with_the_same_scale_read_the_same_fleet_time(tmp_path: Path):
    factory = sessions(tmp_path)
    wall = datetime.now(UTC)
    with transaction(factory) as session:
        first = resume_clock(session, time_scale=600, wall_now=wall)
    with transaction(factory) as session:
        second = resume_clock(session, time_scale=600, wall_now=wall + timedelta(seconds=5))
    assert (first.fleet_origin, first.wall_origin) == (second.fleet_origin, second.wall_origin)
    assert abs((first.now() - second.now()).total_seconds()) < 60  # both ~x600 of one wall


def test_a_new_scale_continues_from_the_fleet_time_of_the_old_one(tmp_path: Path):
    factory = sessions(tmp_path)
    start = datetime.now(UTC) - timedelta(seconds=10)
    with transaction(factory) as session:
        fast = resume_clock(session, time_scale=600, wall_now=start)
    ahead = fast.now()
    assert ahead - start > timedelta(minutes=90)
    with transaction(factory) as session:
        slow = resume_clock(session, time_scale=1, wall_now=datetime.now(UTC))
    assert slow.now() >= ahead, "fleet time never runs backwards"
    assert slow.time_scale == 1


def test_a_fresh_database_starts_fleet_time_at_wall_time(tmp_path: Path):
    factory = sessions(tmp_path)
    wall = datetime.now(UTC)
    with transaction(factory) as session:
        clock = resume_clock(session, time_scale=1, wall_now=wall)
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1

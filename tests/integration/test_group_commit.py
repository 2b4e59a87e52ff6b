"""Group commit: what waits while a batch is written goes in the next one, each item gets
its own answer only after its commit, and one bad item never fails its batch-mates."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.engine import make_engine, make_session_factory, migrate
from clusterplane.db.group_commit import GroupCommit
from clusterplane.db.rows import EventRow
from clusterplane.errors import InvalidRequest
from tests.support.databases import backend, fresh_database_url


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(fresh_database_url(tmp_path, "group.db"))
    migrate(engine)
    yield make_session_factory(engine)
    engine.dispose()


def stored(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return sorted(session.scalars(select(EventRow.object_id)).all())


def insert_each(session: Session, items: Sequence[str]) -> list[str | Exception]:
    for item in items:
        session.add(
            EventRow(object_type="test", object_id=item, kind="k", message="", at=datetime.now(UTC))
        )
    return [item.upper() for item in items]


def test_items_queued_while_a_batch_is_written_go_together_in_the_next_transaction(
    sessions: sessionmaker[Session],
):
    batches: list[list[str]] = []
    writing, release = threading.Event(), threading.Event()

    def write(session: Session, items: Sequence[str]) -> list[str | Exception]:
        batches.append(list(items))
        if len(batches) == 1:
            writing.set()
            assert release.wait(10)
        return insert_each(session, items)

    group: GroupCommit[str, str] = GroupCommit(sessions, write)
    seen_at_answer: dict[str, int] = {}

    async def submit(item: str) -> str:
        answer = await group.submit(item)
        with sessions() as session:
            seen_at_answer[item] = int(
                session.scalar(
                    select(func.count()).select_from(EventRow).where(EventRow.object_id == item)
                )
                or 0
            )
        return answer

    async def storm() -> list[str]:
        first = asyncio.ensure_future(submit("a"))
        await asyncio.to_thread(writing.wait, 10)
        rest = [asyncio.ensure_future(submit(x)) for x in "bcdef"]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(storm()) == ["A", "B", "C", "D", "E", "F"]
    assert batches == [["a"], ["b", "c", "d", "e", "f"]]
    assert seen_at_answer == dict.fromkeys("abcdef", 1)
    assert stored(sessions) == list("abcdef")


def test_a_batch_that_fails_for_one_item_is_written_again_item_by_item_and_only_that_one_fails(
    sessions: sessionmaker[Session],
):
    calls: list[list[str]] = []

    def write(session: Session, items: Sequence[str]) -> list[str | Exception]:
        calls.append(list(items))
        outcomes = insert_each(session, items)
        session.flush()
        if "bad" in items:
            raise RuntimeError("the database refused it")
        return outcomes

    group: GroupCommit[str, str] = GroupCommit(sessions, write)
    outcomes = group.write_batch(["x", "bad", "y"])

    assert outcomes[0] == "X" and outcomes[2] == "Y"
    assert isinstance(outcomes[1], RuntimeError)
    assert calls == [["x", "bad", "y"], ["x"], ["bad"], ["y"]]
    assert stored(sessions) == ["x", "y"]


def test_an_item_its_write_refuses_gets_its_own_error_and_its_batch_mates_commit_together(
    sessions: sessionmaker[Session],
):
    calls: list[list[str]] = []

    def write(session: Session, items: Sequence[str]) -> list[str | Exception]:
        calls.append(list(items))
        good = [item for item in items if item != "refused"]
        insert_each(session, good)
        return [InvalidRequest("no") if item == "refused" else item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(sessions, write)

    async def storm() -> list[str | BaseException]:
        return await asyncio.gather(
            *(group.submit(x) for x in ("p", "refused", "q")), return_exceptions=True
        )

    answers = asyncio.run(storm())
    assert answers[0] == "P" and answers[2] == "Q"
    assert isinstance(answers[1], InvalidRequest)
    assert sum(len(c) for c in calls) == 3  # a refusal is an answer, not a retry
    assert stored(sessions) == ["p", "q"]


def _lock_rows_in_the_other_order(
    sessions: sessionmaker[Session], mine: threading.Event, theirs: threading.Event
) -> None:
    """Another writer: holds row "r2", then (once the batch holds "r1") wants "r1"."""
    with sessions() as session, session.begin():
        session.execute(update(EventRow).where(EventRow.object_id == "r2").values(message="t"))
        mine.set()
        assert theirs.wait(10)
        time.sleep(0.3)  # the batch waits first, so PostgreSQL's deadlock check picks it
        session.execute(update(EventRow).where(EventRow.object_id == "r1").values(message="t"))


@pytest.mark.skipif(backend() != "postgresql", reason="SQLite has one writer: no deadlocks")
def test_a_batch_chosen_as_a_deadlock_victim_is_written_again_and_answered(
    sessions: sessionmaker[Session],
):
    with sessions() as session, session.begin():
        insert_each(session, ["r1", "r2"])
    other_holds_r2, batch_holds_r1 = threading.Event(), threading.Event()
    other = threading.Thread(
        target=_lock_rows_in_the_other_order, args=(sessions, other_holds_r2, batch_holds_r1)
    )
    attempts: list[list[str]] = []

    def write(session: Session, items: Sequence[str]) -> list[str | Exception]:
        attempts.append(list(items))
        if len(attempts) == 1:
            assert other_holds_r2.wait(10)
            for row in ("r1", "r2"):
                session.execute(
                    update(EventRow).where(EventRow.object_id == row).values(message="b")
                )
                batch_holds_r1.set()
        return insert_each(session, items)

    other.start()
    outcomes = GroupCommit(sessions, write).write_batch(["x"])
    other.join(10)

    assert outcomes == ["X"], f"the deadlock was answered instead of retried: {outcomes}"
    assert attempts == [["x"], ["x"]]
    assert stored(sessions) == ["r1", "r2", "x"]

"""A count of the committed transactions of this process that changed rows.

Who uses it: the API's read cache (`api/read_cache.py`) tags what it caches with the count
seen *before* it read, and serves an entry only while the count is unchanged, so nothing
written through this process is ever answered from before the write.

Invariants:
    * Counted are sessions of the given factory that ran an INSERT, UPDATE or DELETE
      (an ORM flush or a DML statement) and committed; reads, and transactions that only
      locked or selected (a controller's idle due-row scan), do not count.
    * The count moves *after* the database commit, so a reader that saw the new count
      began after the new rows were visible.
    * It knows nothing of other processes: a replica beside this one is seen only when
      cached entries expire.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, sessionmaker

_WROTE = "clusterplane_wrote"


class WriteCounter:
    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        return self._value

    def bump(self) -> None:
        with self._lock:
            self._value += 1


def count_writes(factory: sessionmaker[Session]) -> WriteCounter:
    """A counter of the write transactions committed by sessions of `factory`."""
    counter = WriteCounter()

    def wrote_by_flush(session: Session, _flush: UOWTransaction) -> None:
        session.info[_WROTE] = True

    def wrote_by_statement(state: ORMExecuteState) -> None:
        if state.is_insert or state.is_update or state.is_delete:
            state.session.info[_WROTE] = True

    def committed(session: Session) -> None:
        if session.info.pop(_WROTE, False):
            counter.bump()

    def rolled_back(session: Session, *_: Any) -> None:
        session.info.pop(_WROTE, None)

    event.listen(factory, "after_flush", wrote_by_flush)
    event.listen(factory, "do_orm_execute", wrote_by_statement)
    event.listen(factory, "after_commit", committed)
    event.listen(factory, "after_rollback", rolled_back)
    return counter

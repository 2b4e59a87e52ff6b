"""Single-statement reads on the event loop's own SQLite connection, for the hottest GET.

Handing a read to a worker thread and back cost a GET of a cluster more CPU than all the
rest of it (0.38 ms of 0.60 ms in-process, `python -m benchmarks.profile cpu`). On SQLite
in WAL mode, reading one row by primary key takes tens of microseconds and never waits
for the writer, so the event loop runs such a read itself, on a connection of its own:
never one of the pool's, whose checkout could wait for a free one.

Invariants:
    * The connection only reads (`query_only`) and never waits for a lock
      (`busy_timeout = 0`): a read that would wait (the rare moment a checkpoint resets
      the WAL) answers None, and so does any database error, and the caller reads as
      usual, on a worker thread.
    * Each read is one statement in autocommit mode, so it sees one committed state.
    * Only SQLite files are read this way; for PostgreSQL (a network round trip would
      stall the loop) and in-memory databases `all` always answers None.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from clusterplane.db.prepared import Prepared, R, Reader

log = logging.getLogger(__name__)


class LoopReader:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        database = engine.url.database or ""
        self._path = database if engine.dialect.name == "sqlite" else ""
        if self._path in ("", ":memory:") or self._path.startswith("file:"):
            self._path = ""
        self._reader: Reader | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._path)

    def all(self, query: Prepared[R], **params: Any) -> list[R] | None:
        """The statement's rows, or None where it cannot be read here without waiting."""
        if not self._path:
            return None
        if not self._lock.acquire(blocking=False):
            return None  # another thread is reading on it: never wait
        try:
            return self._open().all(query, **params)
        except (sqlite3.Error, DBAPIError) as exc:
            log.debug("a read on the loop's connection gave way to a worker: %s", exc)
            self._close()
            return None
        finally:
            self._lock.release()

    def _open(self) -> Reader:
        if self._reader is None:
            connection = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA query_only = ON")
            connection.execute("PRAGMA busy_timeout = 0")
            self._connection = connection
            self._reader = Reader(connection, self._engine.dialect, self._engine)
        return self._reader

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._reader = None

    def close(self) -> None:
        with self._lock:
            self._close()

"""Which database errors mean "another writer got in the way; the same work again will do".

Two replicas writing the same rows can meet in a deadlock (PostgreSQL aborts one of the
two transactions), a serialization failure (under REPEATABLE READ or SERIALIZABLE), a lock
it may not wait for, or a unique index a concurrent writer filled first (the work, done
again, reads that row and decides differently). SQLite's single writer cannot deadlock, but
a writer of another process can hold the database past the busy timeout.

Each of these is raised by a statement (or a commit PostgreSQL refuses), so the
transaction is known to have been rolled back: doing the work again in a new one writes it
once. Callers retry a bounded number of times (`backoff` spaces the attempts); API writes
do it through `write_retrying`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.engine import transaction

R = TypeVar("R")

# deadlock_detected, serialization_failure, lock_not_available, unique_violation
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03", "23505"})
SQLITE_BUSY = ("database is locked", "database is busy")


def is_retryable(exc: BaseException) -> bool:
    """True when `exc` is a concurrent writer's interference, rolled back and worth redoing."""
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in RETRYABLE_SQLSTATES
    return any(text in str(exc.orig).lower() for text in SQLITE_BUSY)


def backoff(attempt: int, *, base: float = 0.01, cap: float = 0.5) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): doubling, with jitter, so
    two writers that collided do not collide again in lockstep."""
    return float(min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))


def write_retrying(
    factory: sessionmaker[Session], work: Callable[[Session], R], *, attempts: int = 3
) -> R:
    """`work(session)` in a write transaction (`db.engine.transaction`), and what it
    returns. When another writer got in the way (`is_retryable`), that transaction was
    rolled back: `work` runs again in a new one, up to `attempts` times in all, so a
    request that met a deadlock between replicas is answered as if it had not."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction(factory) as session:
                return work(session)
        except DBAPIError as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            time.sleep(backoff(attempt))
    raise AssertionError("unreachable")

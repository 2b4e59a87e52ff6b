"""Row leases: how a controller claims due rows so no other worker acts on them.

A lease is (`lease_owner`, `lease_token`, `lease_expires_at`) on the row. Taking leases is
one conditional UPDATE, in the transaction that found the due rows, that succeeds only for
rows unleased or whose lease has expired (so a crashed worker's rows are taken over);
every later write by the holder is guarded by
the token, so a worker whose lease was taken over cannot overwrite the new holder's work.
Lease times are wall-clock (`wall_now`, independent of the possibly scaled fleet clock);
callers pass it in, so a deterministic simulation can drive leases from its own clock.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from clusterplane.db.engine import READ_ONLY


def rowcount(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE (typed loosely by SQLAlchemy's `Result`)."""
    count = getattr(result, "rowcount", -1)
    return int(count)


def _is_due(row_type: Any, fleet_now: Any, wall: Any) -> Any:
    """Reconcile time come, lease free or expired: the one definition of a due row."""
    return and_(
        row_type.deleted_at.is_(None),
        row_type.next_reconcile_at.is_not(None),
        row_type.next_reconcile_at <= fleet_now,
        or_(row_type.lease_expires_at.is_(None), row_type.lease_expires_at < wall),
    )


def due_ids(
    session: Session, row_type: Any, *, fleet_now: datetime, wall: datetime, limit: int
) -> list[str]:
    """Ids of rows whose reconcile time has come and whose lease is free or expired.

    On PostgreSQL the scan skips rows another replica is leasing right now (`SKIP LOCKED`),
    so replicas spread over the due rows instead of queueing on the same ones.
    """
    return [row_id for row_id, _ in _due(session, row_type, fleet_now, wall, limit)]


def _due(
    session: Session, row_type: Any, fleet_now: datetime, wall: datetime, limit: int
) -> list[tuple[str, bool]]:
    """(id, whether an earlier lease lapsed on it unreleased) of the due rows, locked."""
    query = (
        select(row_type.id, row_type.lease_expires_at.is_not(None))
        .where(_is_due(row_type, fleet_now, wall))
        .order_by(row_type.next_reconcile_at, row_type.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(row_id, bool(lapsed)) for row_id, lapsed in session.execute(query)]


_DUE_COUNTS: dict[Any, Any] = {}


def count_due(
    session: Session, row_type: Any, *, fleet_now: datetime, wall: datetime, cap: int
) -> int:
    """How many rows are due (as `due_ids` sees them), counting no further than `cap`."""
    query = _DUE_COUNTS.get(row_type)
    if query is None:
        due = _is_due(row_type, bindparam("fleet_now"), bindparam("wall"))
        capped = select(row_type.id).where(due).limit(bindparam("cap")).subquery()
        query = _DUE_COUNTS[row_type] = select(func.count()).select_from(capped)
    found = session.scalar(query, {"fleet_now": fleet_now, "wall": wall, "cap": cap})
    return int(found or 0)


_DUE_PROBES: dict[Any, Any] = {}


def anything_due(engine: Engine, row_type: Any, *, fleet_now: datetime, wall: datetime) -> bool:
    """Whether any row is due, read without a write transaction or a session.

    Most controller passes find nothing to do; this keeps them from taking the write lock
    (SQLite) or a row lock (PostgreSQL) just to learn that. A row that becomes due right
    after is found by the next pass.
    """
    probe = _DUE_PROBES.get(row_type)
    if probe is None:
        probe = _DUE_PROBES[row_type] = (
            select(row_type.id)
            .where(_is_due(row_type, bindparam("fleet_now"), bindparam("wall")))
            .limit(1)
        )
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        found = conn.execute(probe, {"fleet_now": fleet_now, "wall": wall}).first()
        conn.rollback()
    return found is not None


def claim_due(
    session: Session,
    row_type: Any,
    *,
    fleet_now: datetime,
    wall: datetime,
    limit: int,
    owner: str,
    seconds: float,
    taken_over: list[str] | None = None,
) -> list[tuple[str, str]]:
    """Find due rows and lease them in the same transaction: (id, token) for each.

    The scan's rows stay locked until the commit (PostgreSQL's `FOR UPDATE SKIP LOCKED`;
    SQLite's single writer), so no other replica can lease them in between, and a pass
    costs one transaction for all its rows instead of one per row. The rows share a token
    (the guard is always id and token together). The ids of leased rows whose earlier
    lease had lapsed without a release (its holder died or overran) are appended to
    `taken_over`.
    """
    due = _due(session, row_type, fleet_now, wall, limit)
    if not due:
        return []
    ids = [row_id for row_id, _ in due]
    token = uuid.uuid4().hex
    leased = session.scalars(
        update(row_type)
        .where(
            row_type.id.in_(ids),
            row_type.deleted_at.is_(None),
            or_(row_type.lease_expires_at.is_(None), row_type.lease_expires_at < wall),
        )
        .values(
            lease_owner=owner, lease_token=token, lease_expires_at=wall + timedelta(seconds=seconds)
        )
        .returning(row_type.id)
        .execution_options(synchronize_session=False)
    )
    got = set(leased)
    if taken_over is not None:
        taken_over.extend(row_id for row_id, lapsed in due if lapsed and row_id in got)
    return [(row_id, token) for row_id in ids if row_id in got]


def renew(
    session: Session, row_type: Any, row_id: str, token: str, *, seconds: float, wall: datetime
) -> bool:
    """Extend a lease this token still holds; False when it was lost."""
    result = session.execute(
        update(row_type)
        .where(row_type.id == row_id, row_type.lease_token == token)
        .values(lease_expires_at=wall + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def load_guarded(session: Session, row_type: Any, row_id: str, token: str) -> Any | None:
    """The row, locked for update, if `token` still holds its lease; otherwise None."""
    row = session.scalar(
        select(row_type)
        .where(row_type.id == row_id, row_type.lease_token == token)
        .with_for_update()
    )
    return row


def release(row: Any) -> None:
    row.lease_owner = None
    row.lease_token = None
    row.lease_expires_at = None


def release_by_token(
    session: Session, row_type: Any, row_id: str, token: str, *, retry_at: datetime | None
) -> None:
    values: dict[str, Any] = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}
    if retry_at is not None:
        values["next_reconcile_at"] = retry_at
    session.execute(
        update(row_type)
        .where(row_type.id == row_id, row_type.lease_token == token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )

"""Row leases: how a controller claims one due row so no other worker acts on it.

A lease is (`lease_owner`, `lease_token`, `lease_expires_at`) on the row. Taking it is one
conditional UPDATE that succeeds only when the row is unleased or its lease has expired
(so a crashed worker's rows are taken over); every later write by the holder is guarded by
the token, so a worker whose lease was taken over cannot overwrite the new holder's work.
Lease times are wall-clock (`wall_now`, independent of the possibly scaled fleet clock);
callers pass it in, so a deterministic simulation can drive leases from its own clock.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session


def rowcount(result: Any) -> int:
    """Rows matched by an UPDATE or DELETE (typed loosely by SQLAlchemy's `Result`)."""
    count = getattr(result, "rowcount", -1)
    return int(count)


def due_ids(
    session: Session, row_type: Any, *, fleet_now: datetime, wall: datetime, limit: int
) -> list[str]:
    """Ids of rows whose reconcile time has come and whose lease is free or expired.

    On PostgreSQL the scan skips rows another replica is leasing right now (`SKIP LOCKED`),
    so replicas spread over the due rows instead of queueing on the same ones.
    """
    query = (
        select(row_type.id)
        .where(
            row_type.deleted_at.is_(None),
            row_type.next_reconcile_at.is_not(None),
            row_type.next_reconcile_at <= fleet_now,
            or_(row_type.lease_expires_at.is_(None), row_type.lease_expires_at < wall),
        )
        .order_by(row_type.next_reconcile_at, row_type.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def acquire(
    session: Session, row_type: Any, row_id: str, *, owner: str, seconds: float, wall: datetime
) -> str | None:
    """Take the lease on one row; returns the token, or None if someone else holds it."""
    token = uuid.uuid4().hex
    result = session.execute(
        update(row_type)
        .where(
            row_type.id == row_id,
            row_type.deleted_at.is_(None),
            or_(row_type.lease_expires_at.is_(None), row_type.lease_expires_at < wall),
        )
        .values(
            lease_owner=owner, lease_token=token, lease_expires_at=wall + timedelta(seconds=seconds)
        )
        .execution_options(synchronize_session=False)
    )
    return token if rowcount(result) == 1 else None


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

"""Replay safety for POSTs: a retried create returns the original object, never a twin.

Two ways to recognise a replay, both scoped to the calling API key:

* `Idempotency-Key` header: the first request with a key is recorded with a fingerprint of
  its method, path and body; a later request with the same key and fingerprint gets the
  original object back, one with the same key but a different request is refused (409).
* No header: the official SDK retries a POST on a dropped connection, a timeout, 408, 409,
  429 and 5xx without any idempotency key, but marks every retry with
  `x-stainless-retry-count: N` (N >= 1). Such a retry whose fingerprint equals a request of
  the same key committed within the replay window (default 10 minutes of wall time, also
  under `--time-scale`) gets the original object back. A request without the retry header
  always acts, so two deliberate identical creates make two clusters.

A JSON body is fingerprinted by content (sorted keys, no whitespace), not by its bytes.

Records are written in the same transaction as the object they describe, so a create and
its record commit together or not at all.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.clock import Clock
from clusterplane.db.rows import IdempotencyRow
from clusterplane.errors import Conflict, InvalidRequest

MAX_KEY_LENGTH = 255


def fingerprint(*, method: str, path: str, body: bytes) -> str:
    """A digest of the request; a JSON body counts by content, not by its bytes, so the
    same object sent with other whitespace or key order is the same request."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), _canonical(body)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _canonical(body: bytes) -> bytes:
    if not body.strip():
        return b""
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return body


def replay_window(clock: Clock, window_seconds: float) -> float:
    """The replay window in the clock's seconds: SDK retries come in wall time, so on a
    scaled clock (`--time-scale`) the window covers `window_seconds` of wall time."""
    real_per_clock_second = clock.real_seconds(1.0)
    if real_per_clock_second <= 0:
        return window_seconds  # a manual clock: tests move time, the window is as given
    return window_seconds / real_per_clock_second


def check_key(key: str) -> None:
    """An `Idempotency-Key` is 1-255 printable characters (no control characters)."""
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable characters, without control characters",
            param="Idempotency-Key",
        )


def find_replay(
    session: Session,
    *,
    api_key_id: str,
    idempotency_key: str | None,
    fingerprint: str,
    is_retry: bool,
    now: datetime,
    window_seconds: float,
) -> str | None:
    """The id of the object an earlier identical request created, or None to act anew."""
    if idempotency_key is not None:
        check_key(idempotency_key)
        row = session.scalar(
            select(IdempotencyRow).where(
                IdempotencyRow.api_key_id == api_key_id,
                IdempotencyRow.idempotency_key == idempotency_key,
            )
        )
        if row is None:
            return None
        if row.fingerprint != fingerprint:
            raise Conflict(
                "this Idempotency-Key was already used with a different request",
                param="Idempotency-Key",
            )
        return row.resource_id
    if not is_retry:
        return None
    row = session.scalar(
        select(IdempotencyRow)
        .where(
            IdempotencyRow.api_key_id == api_key_id,
            IdempotencyRow.fingerprint == fingerprint,
            IdempotencyRow.created_at >= now - timedelta(seconds=window_seconds),
        )
        .order_by(IdempotencyRow.id.desc())
        .limit(1)
    )
    return row.resource_id if row is not None else None


def record(
    session: Session,
    *,
    api_key_id: str,
    idempotency_key: str | None,
    fingerprint: str,
    resource_type: str,
    resource_id: str,
    now: datetime,
) -> None:
    session.add(
        IdempotencyRow(
            api_key_id=api_key_id,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
            resource_type=resource_type,
            resource_id=resource_id,
            created_at=now,
        )
    )

"""Create-once for POST handlers: a replayed create returns the object the first made.

Wraps `services.access.idempotency` for the routers: reads the `Idempotency-Key` and
`x-stainless-retry-count` headers, fingerprints the request, and either loads the object
an identical earlier request created or runs `create` and records it, in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy.orm import Session

from clusterplane.api.deps import RawBody, api_state, parse_int
from clusterplane.services.access import idempotency
from clusterplane.services.access.auth import Caller

R = TypeVar("R")
RETRY_COUNT = "x-stainless-retry-count"


def canonical_path(request: Request) -> str:
    """The path without the tolerated `/v1/v1` prefix, so both spellings replay alike."""
    path = request.url.path
    return path[3:] if path.startswith("/v1/v1/") else path


def is_retry(request: Request) -> bool:
    """Whether the official SDK marked this request as a retry (`x-stainless-retry-count`
    1 or more); a value that is not a count is a 400."""
    value = request.headers.get(RETRY_COUNT)
    return value is not None and parse_int(value, param=RETRY_COUNT) > 0


def create_once(
    request: Request,
    session: Session,
    caller: Caller,
    body: RawBody,
    *,
    row_type: Any,
    resource_type: str,
    now: datetime,
    create: Callable[[], R],
) -> R:
    state = api_state(request)
    key = request.headers.get("idempotency-key")
    if key is not None:
        idempotency.check_key(key)
    retry = is_retry(request)
    fingerprint = idempotency.fingerprint(
        method=request.method, path=canonical_path(request), body=body.raw
    )
    replayed = idempotency.find_replay(
        session,
        api_key_id=caller.api_key_id,
        idempotency_key=key,
        fingerprint=fingerprint,
        is_retry=retry,
        now=now,
        window_seconds=idempotency.replay_window(state.clock, state.settings.replay_window_seconds),
    )
    existing: R | None = session.get(row_type, replayed) if replayed else None
    if existing is not None:
        return existing
    row = create()
    idempotency.record(
        session,
        api_key_id=caller.api_key_id,
        idempotency_key=key,
        fingerprint=fingerprint,
        resource_type=resource_type,
        resource_id=str(getattr(row, "id")),  # noqa: B009 - rows of several types
        now=now,
    )
    return row

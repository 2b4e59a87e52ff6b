"""Request plumbing shared by routers: app state, the caller, bodies and query lists.

Bodies are read here, not by the framework, and only once the caller is authenticated
(an anonymous client gets 401 whatever it sent): the size limit is enforced while
streaming (413 past `max_body_bytes`), an empty body counts as `{}` (the SDK's bodiless
POSTs send `Content-Type: application/json` with no content), anything but a JSON object
is a 400, and the raw bytes are kept for idempotency fingerprints.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from clusterplane import logs
from clusterplane.api.request_ids import path_ids_in_logs
from clusterplane.api.schemas import format_validation_error
from clusterplane.api.state import ApiState
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.errors import InvalidRequest, NotFound, PayloadTooLarge
from clusterplane.services.access.auth import Caller, authenticate, refresh_lookup

M = TypeVar("M", bound=BaseModel)
DIGITS = re.compile(r"-?[0-9]{1,18}", re.ASCII)


def parse_int(value: str, *, param: str, negative: bool = False) -> int:
    """A decimal integer a client sent in a header or query: ASCII digits only, at most 18
    of them (Python's `isdigit` also takes '²', which `int` refuses), else a 400."""
    text = value.strip()
    if DIGITS.fullmatch(text) is None or (text.startswith("-") and not negative):
        kind = "an integer" if negative else "a non-negative integer"
        raise InvalidRequest(f"{param} must be {kind}", param=param)
    return int(text)


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.cp
    return state


async def request_text_has_no_nul(request: Request) -> None:
    """No id or filter holds a NUL (PostgreSQL text cannot), so none reaches a query.

    A path id with one names nothing: 404. A query parameter with one is a 400 naming the
    parameter. Installed on the whole app.
    """
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise NotFound(f"{name.removesuffix('_id')} '{value}' not found", param=name)
    for name, value in request.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise InvalidRequest(
                f"query parameter '{name}' must not contain NUL characters", param=name
            )


async def request_checks(request: Request) -> None:
    """The app-wide dependency: no NUL in the request's ids and filters, and the ids its
    path names in the log context. One dependency, not two: FastAPI's solving of each
    costs about as much as a whole `/healthz`'s work."""
    await request_text_has_no_nul(request)
    await path_ids_in_logs(request)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_caller(request: Request) -> Caller:
    """The authenticated caller, admitted against its key's bound on responses in flight
    (`state.inflight`: 429 past it)."""
    state = api_state(request)
    caller = await _caller(request, state)
    logs.annotate(project_id=caller.project_id, api_key_id=caller.api_key_id)
    state.inflight.admit(request, caller)
    return caller


async def _caller(request: Request, state: ApiState) -> Caller:
    """A key seen a moment ago comes from `state.callers` without touching the database or
    leaving the event loop, and a key being looked up already is waited for
    (`state.logins`), not looked up again."""
    token = bearer_token(request)
    if token is None:
        return await run_in_threadpool(_authenticate, state, token)
    cached = state.callers.get(token)
    if cached is not None and not cached.expired(state.wall_clock.now()):
        return cached

    async def lookup() -> Caller:
        caller = await run_in_threadpool(_authenticate, state, token)
        state.callers.put(token, caller)
        return caller

    # Concurrent requests with one uncached key (a storm of agents) share one lookup.
    return await state.logins.run(hashlib.sha256(token.encode()).digest(), lookup)


def _authenticate(state: ApiState, token: str | None) -> Caller:
    lookup_keys = state.secrets.lookup_keys
    with read_transaction(state.sessions) as session:
        caller = authenticate(session, token, lookup_keys=lookup_keys, now=state.wall_clock.now())
    if caller.lookup_stale and token is not None:
        with transaction(state.sessions) as session:
            refresh_lookup(session, caller.api_key_id, token, lookup_keys[0])
    return caller


@dataclass(frozen=True)
class RawBody:
    data: dict[str, Any]
    raw: bytes


async def raw_body(request: Request, _: Caller = Depends(current_caller)) -> RawBody:
    limit = api_state(request).settings.server.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and parse_int(declared, param="Content-Length") > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return RawBody({}, raw)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    return RawBody(data, raw)


def validate(model: type[M], body: RawBody) -> M:
    try:
        return model.model_validate(body.data)
    except ValidationError as exc:
        message, param = format_validation_error(exc)
        raise InvalidRequest(message, param=param) from None


def comma_list(values: list[str] | None, enum: Any, param: str) -> list[Any]:
    """`a,b` or repeated `x=a&x=b` query values, each one a value of `enum`."""
    items = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    result = []
    for item in items:
        try:
            result.append(enum(item))
        except ValueError:
            known = ", ".join(e.value for e in enum)
            raise InvalidRequest(
                f"{param}: unknown value '{item}'; known: {known}", param=param
            ) from None
    return result


def project_filter(request: Request) -> str | None:
    params = request.query_params
    value = params.get("projectId") or params.get("project_id")
    return value or None

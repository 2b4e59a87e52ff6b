"""One place where errors become HTTP: status, the spec's envelope, and retry headers.

Body: `{"error": {"message", "type", "param", "code"}}` (spec §1.6), which the official
CLI prints as its error message. Every 4xx but 429 is deterministic and carries
`x-should-retry: false` so the SDK does not replay it (a 429 carries `retry-after`
instead); nothing here ever returns a traceback. Messages may quote what the client sent
(an id from the path), so they are made safe to print here: control characters are
escaped and overlong text is shortened.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from clusterplane.api.schemas import format_validation_error
from clusterplane.errors import ClusterplaneError, TooManyRequests

log = logging.getLogger(__name__)

_HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
}


MAX_MESSAGE_CHARS = 400


def readable(message: str) -> str:
    """`message` as one printable line: control characters escaped, at most 400 chars."""
    text = "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode()
        for ch in message
    )
    if len(text) > MAX_MESSAGE_CHARS:
        head = MAX_MESSAGE_CHARS * 2 // 3
        text = text[:head] + "..." + text[head + 3 - MAX_MESSAGE_CHARS :]
    return text


def error_response(
    status: int,
    message: str,
    *,
    error_type: str,
    param: str | None = None,
    code: str | None = None,
    retry: bool | None = None,
) -> Response:
    body = {
        "error": {"message": readable(message), "type": error_type, "param": param, "code": code}
    }
    headers = {}
    if retry is not None:
        headers["x-should-retry"] = "true" if retry else "false"
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def from_exception(exc: ClusterplaneError) -> Response:
    if isinstance(exc, TooManyRequests):  # the SDK retries a 429 after `retry-after`
        response = error_response(
            exc.status_code, exc.message, error_type=exc.error_type, code=exc.error_type
        )
        response.headers["retry-after"] = f"{exc.retry_after_seconds:g}"
        return response
    retry = False if exc.status_code < 500 else None
    return error_response(
        exc.status_code,
        exc.message,
        error_type=exc.error_type,
        param=exc.param,
        code=exc.code or exc.error_type,
        retry=retry,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(ClusterplaneError)
    async def _known(_: Request, exc: ClusterplaneError) -> Response:
        return from_exception(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg', 'invalid')}" if param else "invalid request"
        return error_response(
            400,
            message,
            error_type="invalid_request_error",
            param=param,
            code="invalid_request_error",
            retry=False,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if status == 404:
            message = "no such endpoint"
        return error_response(
            status,
            message,
            error_type=_HTTP_TYPES.get(status, "error"),
            code=_HTTP_TYPES.get(status),
            retry=False if status < 500 else None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return error_response(
            500, "internal error", error_type="internal_error", code="internal_error"
        )


__all__ = ["error_response", "format_validation_error", "from_exception", "install"]

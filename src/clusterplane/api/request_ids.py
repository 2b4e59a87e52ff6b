"""Request ids and the access log.

`RequestIds` (outermost middleware) takes the client's `X-Request-ID` when it is 1-128
printable ASCII characters without spaces, else makes one; echoes it on the response;
opens the request's log context (`clusterplane.logs`); and writes one access-log line per
request: method, path (never the query string), status and duration. No header is ever
logged, so an API key cannot reach the log. `path_ids_in_logs` (an app-wide dependency)
adds the cluster, node and project ids a path names to the context.
"""

from __future__ import annotations

import logging
import os
import re
import time

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clusterplane import logs

HEADER = "X-Request-ID"
RAW_HEADER = HEADER.lower().encode()
ACCEPTED = re.compile(r"[\x21-\x7e]{1,128}")
access_log = logging.getLogger("clusterplane.access")


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-request-id":
            text: str = value.decode("latin-1")
            if ACCEPTED.fullmatch(text):
                return text
            break
    return os.urandom(16).hex()  # as random as a uuid4's hex, without building a UUID


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # The app never sets this header itself, so it is added, not replaced.
                message["headers"] = [
                    *message.get("headers", ()),
                    (RAW_HEADER, request_id.encode()),
                ]
            await send(message)

        with logs.scope(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                access_log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )


async def path_ids_in_logs(request: Request) -> None:
    params = request.path_params
    logs.annotate(
        cluster_id=params.get("cluster_id"),
        node_id=params.get("instance_id") or params.get("node_id"),
        project_id=params.get("project_id"),
    )

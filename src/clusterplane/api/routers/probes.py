"""`GET /healthz` (the process answers) and `GET /readyz` (it can also reach its database).

`/readyz` asks the database for one row through the server's own connection pool and
answers 503 (in the spec's error envelope) when that takes longer than
`server.readiness_timeout_seconds` or fails: an exhausted pool, a locked or unreachable
database. Concurrent probes share one query in flight, so a stuck database never piles
up probe threads. Neither needs a key.

`/healthz` is a plain route, not an API route: it reads no parameters, so it skips the
dependency solving every API route pays (the app-wide checks, about a third of the
floor's CPU), while still passing through every middleware (request id, access line).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from clusterplane.api import presenters
from clusterplane.api.deps import api_state
from clusterplane.api.errors import error_response
from clusterplane.api.single_flight import SingleFlight
from clusterplane.api.state import ApiState
from clusterplane.db.engine import read_transaction

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
_pings: SingleFlight[None] = SingleFlight()


HEALTHY = presenters.encode({"status": "ok"})


async def _healthz(_: Request) -> Response:
    return Response(HEALTHY, media_type="application/json")


healthz = Route("/healthz", _healthz, methods=["GET"], include_in_schema=False)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    state = api_state(request)
    budget = state.settings.server.readiness_timeout_seconds
    try:
        await asyncio.wait_for(_pings.run("database", lambda: _ping(state)), budget)
    except TimeoutError:
        message = f"the database gave no answer within {budget:g} s"
    except Exception as exc:  # any failure to reach it means not ready
        log.warning("readiness: the database is unreachable", exc_info=exc)
        message = "the database cannot be reached"
    else:
        return presenters.json_response({"status": "ok", "database": "ok"})
    return error_response(503, message, error_type="service_unavailable", code="not_ready")


async def _ping(state: ApiState) -> None:
    def query() -> None:
        with read_transaction(state.sessions) as session:
            session.execute(select(1)).one()

    await run_in_threadpool(query)

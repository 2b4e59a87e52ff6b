"""`GET /metrics`: the Prometheus text exposition of the application's registry.

The figures span the whole fleet (every project's clusters, the hosts, the repairs), so
with `metrics.require_key` (the default) only an admin API key or the scrape-only
`metrics.token` reads them: no key or an unknown one is a 401, a tenant's key a 403, in
the spec's error envelope. Rendering runs in the thread pool, since the fleet collector
may read the database (`services.capacity.fleet_metrics`). Not in the OpenAPI document.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from clusterplane.api.deps import api_state, bearer_token, current_caller
from clusterplane.services.access.auth import require_admin

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state = api_state(request)
    assert state.metrics is not None, "the router is installed only with metrics"
    if state.settings.metrics.require_key and not _is_scrape_token(request):
        require_admin(await current_caller(request))
    body = await run_in_threadpool(generate_latest, state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _is_scrape_token(request: Request) -> bool:
    expected = api_state(request).settings.metrics.token
    presented = bearer_token(request)
    if expected is None or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())

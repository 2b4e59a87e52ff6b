"""`/admin/v1/fleet/hosts...`: the operator lists hosts and changes their service state.

Admin keys only. `GET /admin/v1/fleet/hosts` filters by region, gpu_type, state, fabric,
block, rack, cluster_id, draining and placeable; `POST .../hosts/{host}/drain`,
`/undrain`, `/offline` and `/online` (host by id or name) answer the host as it is now.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from clusterplane.api import presenters
from clusterplane.api.deps import api_state
from clusterplane.api.routers.admin import admin
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import HostRow
from clusterplane.services.access.auth import Caller
from clusterplane.services.capacity import fleet_state

router = APIRouter(prefix="/admin/v1/fleet", tags=["admin"], dependencies=[Depends(admin)])


@router.get("/hosts")
def list_hosts(
    request: Request,
    region: str | None = Query(None),
    gpu_type: str | None = Query(None),
    state: str | None = Query(None),
    fabric: str | None = Query(None),
    block: str | None = Query(None),
    rack: str | None = Query(None),
    cluster_id: str | None = Query(None),
    draining: bool | None = Query(None),
    placeable: bool | None = Query(None),
    caller: Caller = Depends(admin),
) -> Response:
    where = fleet_state.HostFilter(
        region=region,
        gpu_type=gpu_type,
        state=state,
        fabric=fabric,
        block=block,
        rack=rack,
        cluster_id=cluster_id,
        draining=draining,
        placeable=placeable,
    )
    with read_transaction(api_state(request).sessions) as session:
        rows = fleet_state.list_hosts(session, where)
        hosts = [fleet_state.host_view(h) for h in rows]
    return presenters.json_response({"hosts": hosts})


Action = Callable[..., HostRow]


def _act(request: Request, host: str, action: Action) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        result = fleet_state.host_view(action(session, host, now=state.clock.now()))
    return presenters.json_response(result)


@router.post("/hosts/{host}/drain")
def drain(host: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    """Keep the host's cluster, never hand the host out again (until undrained)."""
    return _act(request, host, fleet_state.drain)


@router.post("/hosts/{host}/undrain")
def undrain(host: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    return _act(request, host, fleet_state.undrain)


@router.post("/hosts/{host}/offline")
def offline(host: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    """Take a host no cluster holds out of service."""
    return _act(request, host, fleet_state.mark_offline)


@router.post("/hosts/{host}/online")
def online(host: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    """Put an offline, quarantined or maintenance host back in service."""
    return _act(request, host, fleet_state.mark_online)

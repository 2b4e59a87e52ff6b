"""`/console/v1/...`: what the web console reads beyond the wire API (any key, scoped as
the wire API is; the fleet to admin keys only). Left out of the OpenAPI description: the
console is their one client.

GET /console/v1/me                          the key, its project, whether it is an admin's
GET /console/v1/stream                      live updates (api/console_stream.py)
GET /console/v1/remediations                the inbox: the project's remediations
GET /console/v1/clusters/{id}/timeline      audit events and node health of a cluster
GET /console/v1/fleet                       hosts with health, utilisation (admin keys)
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from clusterplane.api import console_stream, presenters
from clusterplane.api.deps import api_state, current_caller
from clusterplane.api.routers.admin import admin
from clusterplane.db.engine import read_transaction
from clusterplane.db.rows import OrganizationRow, ProjectRow
from clusterplane.services.access.auth import Caller
from clusterplane.services.events import console_views

router = APIRouter(prefix="/console/v1", tags=["console"], include_in_schema=False)


@router.get("/me")
def me(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        project = session.get(ProjectRow, caller.project_id)
        org = session.get(OrganizationRow, caller.organization_id)
        body = {
            "api_key_id": caller.api_key_id,
            "is_admin": caller.is_admin,
            "project": {"id": caller.project_id, "name": project.name if project else ""},
            "organization": {"id": caller.organization_id, "name": org.name if org else ""},
        }
    return presenters.json_response(body)


@router.get("/stream")
async def stream(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    state = api_state(request)
    state.streams.admit(request, caller.api_key_id)
    return StreamingResponse(
        console_stream.events(state, caller),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/remediations")
def inbox(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        rows = console_views.inbox(session, caller)
        items = [{**presenters.remediation(row), "cluster_name": name} for row, name in rows]
    return presenters.json_response({"remediations": items})


@router.get("/clusters/{cluster_id}/timeline")
def timeline(
    cluster_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        events, health = console_views.cluster_events(session, caller, cluster_id)
    body = {
        "cluster_id": cluster_id,
        "now": state.clock.now(),
        "node_health": health,
        "events": [
            {
                "object_type": e.object_type,
                "object": e.object_name,
                "kind": e.kind,
                "message": e.message,
                "at": e.at,
            }
            for e in events
        ],
    }
    return presenters.json_response(body)


@router.get("/fleet")
def fleet(request: Request, caller: Caller = Depends(admin)) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        hosts = console_views.fleet_hosts(session)
    body = {
        "now": state.clock.now(),
        "hosts": hosts,
        "utilisation": console_views.utilisation(hosts),
    }
    return presenters.json_response(body)

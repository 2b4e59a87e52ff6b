"""`POST /admin/v1/fleet/hosts/{name}/faults`: put a fault on a simulated host (admin keys).

Registered by `app` only when the simulated host driver is in use; the simulated agent
(the fault controller) reports the fault on its next pass.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import select

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, current_caller, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.db.engine import transaction
from clusterplane.db.rows import HostRow
from clusterplane.domain.health import Action, EventKind
from clusterplane.errors import InvalidRequest, NotFound
from clusterplane.services.access.auth import Caller, require_admin
from clusterplane.simulation import faults
from clusterplane.simulation.fault_model import FaultSpec


class InjectFault(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: EventKind
    xid_code: StrictInt | None = Field(default=None, ge=0, le=1000)
    fixed_by: Action = Action.REPLACE
    transient_seconds: float | None = Field(default=None, gt=0, le=30 * 86400)


async def admin(caller: Caller = Depends(current_caller)) -> Caller:
    require_admin(caller)
    return caller


router = APIRouter(prefix="/admin/v1", tags=["health"], dependencies=[Depends(admin)])


@router.post("/fleet/hosts/{host_name}/faults", openapi_extra=request_body(InjectFault))
def inject_fault(host_name: str, request: Request, body: RawBody = Depends(raw_body)) -> Response:
    """Put a fault on a simulated host; its agent reports it on the next controller pass."""
    req = validate(InjectFault, body)
    if req.kind == EventKind.XID and req.xid_code is None:
        raise InvalidRequest("an xid fault needs its xid_code", param="xid_code")
    state = api_state(request)
    with transaction(state.sessions) as session:
        host = session.scalar(select(HostRow).where(HostRow.name == host_name))
        if host is None:
            raise NotFound(f"host '{host_name}' not found", param="host_name")
        spec = FaultSpec(req.kind, req.xid_code, req.fixed_by, req.transient_seconds)
        fault = faults.inject_fault(session, host, spec, state.clock.now())
        result = {"id": fault.id, "host_name": host.name, "kind": fault.kind, "code": fault.code}
    state.nudge()
    return presenters.json_response(result)

"""`/admin/v1/quotas` and `/admin/v1/projects/{id}/quota`: per-project GPU limits.

Admin keys only. A project without a quota is unlimited; `PUT` sets `{"max_gpus": N}`,
`DELETE` removes the limit. Every answer shows the limit, the GPUs in use and what
remains.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StrictInt

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.routers.admin import admin
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.services import quotas
from clusterplane.services.auth import Caller


class SetQuota(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_gpus: StrictInt


router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(admin)])


@router.get("/quotas")
def list_quotas(request: Request, caller: Caller = Depends(admin)) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        result = [q.as_dict() for q in quotas.list_quotas(session)]
    return presenters.json_response({"quotas": result})


@router.get("/projects/{project_id}/quota")
def get_quota(project_id: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        result = quotas.get_quota(session, project_id).as_dict()
    return presenters.json_response(result)


@router.put("/projects/{project_id}/quota", openapi_extra=request_body(SetQuota))
def set_quota(
    project_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(admin),
) -> Response:
    req = validate(SetQuota, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        result = quotas.set_quota(session, project_id, req.max_gpus, now=state.clock.now())
    return presenters.json_response(result.as_dict())


@router.delete("/projects/{project_id}/quota")
def remove_quota(project_id: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        result = quotas.remove_quota(session, project_id)
    return presenters.json_response(result.as_dict())

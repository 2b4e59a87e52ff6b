"""`/admin/v1/quotas` and `/admin/v1/projects/{id}/quota`: per-project limits.

Admin keys only. `PUT` sets any of `{"max_gpus", "max_preemptible_gpus",
"max_storage_tib"}` (null clears one, an absent one stays), `DELETE` removes them all.
Without a limit of its own a project has no standard GPU limit, and at most the default
share of each region in preemptible GPUs and shared storage (`CapacitySettings`). Every
answer shows the limits, what is in use and what remains (`services/capacity/quotas.py`).
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
from clusterplane.services.access.auth import Caller
from clusterplane.services.capacity import quotas


class SetQuota(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_gpus: StrictInt | None = None
    max_preemptible_gpus: StrictInt | None = None
    max_storage_tib: StrictInt | None = None

    def given(self) -> dict[str, int | None]:
        """The limits the body names (null included), not those it leaves out."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(admin)])


@router.get("/quotas")
def list_quotas(request: Request, caller: Caller = Depends(admin)) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        result = [q.as_dict() for q in quotas.list_quotas(session, state.settings.capacity)]
    return presenters.json_response({"quotas": result})


@router.get("/projects/{project_id}/quota")
def get_quota(project_id: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        result = quotas.get_quota(session, project_id, state.settings.capacity).as_dict()
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
        result = quotas.set_quota(
            session,
            project_id,
            req.given(),
            now=state.clock.now(),
            settings=state.settings.capacity,
        )
    return presenters.json_response(result.as_dict())


@router.delete("/projects/{project_id}/quota")
def remove_quota(project_id: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        result = quotas.remove_quota(session, project_id, state.settings.capacity)
    return presenters.json_response(result.as_dict())

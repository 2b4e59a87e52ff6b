"""`/admin/v1/...`: the operator's API (admin keys only): tenancy and the fleet's state.

Host listing and host state changes live in `admin_fleet.py`, quotas in `admin_quotas.py`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, StrictStr
from sqlalchemy import func, select

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, current_caller, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.schemas.common import FreeText, Identifier, Label
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import HostRow
from clusterplane.domain.enums import RemediationMode
from clusterplane.services import remediations, tenancy
from clusterplane.services.auth import DEFAULT_ORG_ID, Caller, require_admin


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateProject(_Body):
    name: StrictStr
    slug: StrictStr
    organization_id: Identifier = DEFAULT_ORG_ID


class CreateOrganization(_Body):
    name: StrictStr


class CreateUser(_Body):
    name: StrictStr


class AddMember(_Body):
    user_id: Identifier
    role: Literal["member", "owner"] = "member"


class CreateRecommendation(_Body):
    mode: RemediationMode
    reason: FreeText | None = None


class CreateKey(_Body):
    user_id: Identifier
    project_id: Identifier
    name: Label = ""


async def admin(caller: Caller = Depends(current_caller)) -> Caller:
    require_admin(caller)
    return caller


# The admin check runs before any endpoint dependency, so a non-admin caller gets 403
# before its body is read or validated.
router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(admin)])


@router.post("/organizations", openapi_extra=request_body(CreateOrganization))
def create_organization(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(admin)
) -> Response:
    req = validate(CreateOrganization, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = tenancy.create_organization(session, name=req.name, now=state.clock.now())
        result = {"id": row.id, "name": row.name}
    return presenters.json_response(result)


@router.post("/projects", openapi_extra=request_body(CreateProject))
def create_project(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(admin)
) -> Response:
    req = validate(CreateProject, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = tenancy.create_project(
            session,
            organization_id=req.organization_id,
            name=req.name,
            slug=req.slug,
            now=state.clock.now(),
        )
        result = {
            "id": row.id,
            "name": row.name,
            "slug": row.slug,
            "organization_id": row.organization_id,
        }
    return presenters.json_response(result)


@router.post("/users", openapi_extra=request_body(CreateUser))
def create_user(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(admin)
) -> Response:
    req = validate(CreateUser, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = tenancy.create_user(session, name=req.name, now=state.clock.now())
        result = {"id": row.id, "name": row.name}
    return presenters.json_response(result)


@router.post("/projects/{project_id}/members", openapi_extra=request_body(AddMember))
def add_member(
    project_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(admin),
) -> Response:
    req = validate(AddMember, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        tenancy.add_member(session, user_id=req.user_id, project_id=project_id, role=req.role)
    state.callers.clear()  # cached callers of this user hold their old memberships
    return presenters.json_response({"user_id": req.user_id, "project_id": project_id})


@router.post("/api-keys", openapi_extra=request_body(CreateKey))
def create_api_key(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(admin)
) -> Response:
    req = validate(CreateKey, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        issued = tenancy.create_api_key(
            session,
            user_id=req.user_id,
            project_id=req.project_id,
            now=state.clock.now(),
            name=req.name,
        )
    state.callers.clear()  # the key's user may have become a member of its project
    return presenters.json_response({"id": issued.api_key_id, "api_key": issued.secret})


@router.get("/fleet/summary")
def fleet_summary(request: Request, caller: Caller = Depends(admin)) -> Response:
    """Host counts by region, GPU type and state: what the fleet can still hand out."""
    with read_transaction(api_state(request).sessions) as session:
        rows = session.execute(
            select(HostRow.region, HostRow.gpu_type, HostRow.state, func.count())
            .group_by(HostRow.region, HostRow.gpu_type, HostRow.state)
            .order_by(HostRow.region, HostRow.gpu_type, HostRow.state)
        ).all()
    summary: list[dict[str, Any]] = [
        {"region": r, "gpu_type": g, "state": s, "hosts": n} for r, g, s, n in rows
    ]
    return presenters.json_response({"hosts": summary})


@router.post(
    "/clusters/{cluster_id}/instances/{instance_id}/recommendations",
    openapi_extra=request_body(CreateRecommendation),
)
def recommend_remediation(
    cluster_id: str,
    instance_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(admin),
) -> Response:
    """An automated repair proposal (PENDING_APPROVAL), as health checks will raise them."""
    req = validate(CreateRecommendation, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = remediations.create_recommendation(
            session,
            cluster_id=cluster_id,
            instance_id=instance_id,
            mode=req.mode,
            reason=req.reason,
            now=state.clock.now(),
        )
        result = presenters.remediation(row)
    return presenters.json_response(result)

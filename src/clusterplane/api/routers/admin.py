"""`/admin/v1/...`: the operator's API (admin keys only): tenancy, API keys (issue, list,
revoke, expiry) and the fleet's state.

Host listing and host state changes live in `admin_fleet.py`, quotas in `admin_quotas.py`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import func, select

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, current_caller, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.schemas.common import FreeText, Identifier, Label
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import ApiKeyRow, HostRow
from clusterplane.domain.enums import RemediationMode
from clusterplane.services.access import tenancy
from clusterplane.services.access.auth import DEFAULT_ORG_ID, Caller, require_admin
from clusterplane.services.health import remediations


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
    # Wall-clock seconds until the key stops working (absent: it does not expire).
    expires_in_seconds: Annotated[StrictInt, Field(ge=60, le=10 * 366 * 86400)] | None = None


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
    now = state.wall_clock.now()
    expires_at = (
        None if req.expires_in_seconds is None else now + timedelta(seconds=req.expires_in_seconds)
    )
    with transaction(state.sessions) as session:
        issued = tenancy.create_api_key(
            session,
            user_id=req.user_id,
            project_id=req.project_id,
            now=now,
            name=req.name,
            expires_at=expires_at,
        )
    state.callers.clear()  # the key's user may have become a member of its project
    return presenters.json_response(
        {"id": issued.api_key_id, "api_key": issued.secret, "expires_at": expires_at}
    )


def _key_view(row: ApiKeyRow, now: datetime) -> dict[str, Any]:
    """A key without its secret or any hash of it."""
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "id": row.id,
        "name": row.name,
        "user_id": row.user_id,
        "project_id": row.project_id,
        "is_admin": row.is_admin,
        "status": status,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "revoked_at": row.revoked_at,
    }


@router.get("/api-keys")
def list_api_keys(
    request: Request,
    user_id: str | None = None,
    project_id: str | None = None,
    caller: Caller = Depends(admin),
) -> Response:
    """Every key (revoked and expired too), optionally of one user or project."""
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        rows = tenancy.list_api_keys(session, user_id=user_id, project_id=project_id)
    now = state.wall_clock.now()
    return presenters.json_response({"api_keys": [_key_view(r, now) for r in rows]})


@router.post("/api-keys/{key_id}/revoke")
def revoke_api_key(key_id: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    """The key stops working at once on this server, and on every other replica within
    `server.caller_cache_seconds` (their caller caches forget it by then)."""
    state = api_state(request)
    now = state.wall_clock.now()
    with transaction(state.sessions) as session:
        result = _key_view(tenancy.revoke_api_key(session, key_id, now=now), now)
    state.callers.clear()
    return presenters.json_response(result)


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

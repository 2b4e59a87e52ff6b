"""`GET /v3/whoami` (3.x CLI, typed union) and `GET /v1/whoami` (2.x CLI, flat)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from clusterplane.api import presenters
from clusterplane.api.deps import api_state, current_caller
from clusterplane.api.schemas import WhoamiV1Response, WhoamiV3Response
from clusterplane.db.engine import read_transaction
from clusterplane.db.rows import OrganizationRow, ProjectRow
from clusterplane.services.access.auth import Caller

router = APIRouter(tags=["identity"])


def _lookup(request: Request, caller: Caller) -> tuple[OrganizationRow, ProjectRow]:
    with read_transaction(api_state(request).sessions) as session:
        project = session.get(ProjectRow, caller.project_id)
        org = session.get(OrganizationRow, caller.organization_id)
        assert project is not None and org is not None
        return org, project


@router.get("/v3/whoami", response_model=WhoamiV3Response)
def whoami_v3(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    org, project = _lookup(request, caller)
    body: dict[str, Any] = {
        "type": "project_api_key",
        "api_key": {"id": caller.api_key_id},
        "organization": {"id": org.id, "name": org.name},
        "project": {"id": project.id, "name": project.name, "slug": project.slug},
    }
    return presenters.json_response(body)


@router.get("/v1/whoami", response_model=WhoamiV1Response)
def whoami_v1(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    org, project = _lookup(request, caller)
    return presenters.json_response(
        {
            "api_key_id": caller.api_key_id,
            "organization_id": org.id,
            "organization_name": org.name,
            "project_id": project.id,
            "project_name": project.name,
            "project_slug": project.slug,
            "user_id": caller.user_id,
        }
    )

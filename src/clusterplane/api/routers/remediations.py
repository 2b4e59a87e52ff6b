"""`/v1/compute/clusters/{cid}/instances/{iid}/remediations[...]` (spec §2.8)."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from clusterplane.api import presenters
from clusterplane.api.deps import (
    RawBody,
    api_state,
    comma_list,
    current_caller,
    parse_int,
    raw_body,
    validate,
)
from clusterplane.api.openapi import request_body
from clusterplane.api.replay import create_once
from clusterplane.api.schemas import (
    ApproveRemediationRequest,
    CreateRemediationRequest,
    RejectRemediationRequest,
    RemediationListResponse,
    RemediationResponse,
)
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import RemediationRow
from clusterplane.domain.enums import RemediationMode, RemediationState, RemediationTrigger
from clusterplane.errors import InvalidRequest
from clusterplane.services.access.auth import Caller
from clusterplane.services.health import recovery, remediations

router = APIRouter(tags=["remediations"])
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", re.ASCII)
BASE = "/compute/clusters/{cluster_id}/instances/{instance_id}/remediations"


@router.post(
    BASE, response_model=RemediationResponse, openapi_extra=request_body(CreateRemediationRequest)
)
def create_remediation(
    cluster_id: str,
    instance_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(current_caller),
) -> Response:
    req = validate(CreateRemediationRequest, body)
    if instance_id == remediations.ALL_INSTANCES:
        raise InvalidRequest("a remediation names one instance, not '-'", param="instance_id")
    client_id = _client_remediation_id(request.query_params.get("remediation_id"))
    state = api_state(request)
    now = state.clock.now()
    with transaction(state.sessions) as session:
        # An SDK retry of a create that committed gets that remediation, not a 409.
        row = create_once(
            request,
            session,
            caller,
            body,
            row_type=RemediationRow,
            resource_type="remediation",
            now=now,
            create=lambda: remediations.create_remediation(
                session,
                caller,
                cluster_id,
                instance_id,
                mode=req.mode,
                reason=req.reason,
                now=now,
                remediation_id=client_id,
            ),
        )
        result = presenters.remediation(row)
    state.nudge()
    return presenters.json_response(result)


def _client_remediation_id(value: str | None) -> str | None:
    """The 2.x `remediation_id` query: an id that must work as a path segment later."""
    if not value:
        return None
    if CLIENT_ID.fullmatch(value) is None:
        raise InvalidRequest(
            "remediation_id must be 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit",
            param="remediation_id",
        )
    return value


def _page_size(value: str | None) -> int:
    if value is None or value == "":
        return remediations.DEFAULT_PAGE_SIZE
    return parse_int(value, param="page_size", negative=True)


def _newest_first(order_by: str | None) -> bool:
    if not order_by:
        return True
    normalized = " ".join(order_by.lower().split())
    if normalized in ("create_time desc", "create_time"):
        return normalized.endswith("desc")
    if normalized == "create_time asc":
        return False
    raise InvalidRequest(
        "order_by must be 'create_time desc' or 'create_time asc'", param="order_by"
    )


@router.get(BASE, response_model=RemediationListResponse)
def list_remediations(
    cluster_id: str,
    instance_id: str,
    request: Request,
    state_filter: list[str] | None = Query(None, alias="state"),
    mode: list[str] | None = Query(None),
    trigger: list[str] | None = Query(None),
    caller: Caller = Depends(current_caller),
) -> Response:
    params = request.query_params
    filters = remediations.RemediationFilter(
        states=comma_list(state_filter, RemediationState, "state"),
        modes=comma_list(mode, RemediationMode, "mode"),
        triggers=comma_list(trigger, RemediationTrigger, "trigger"),
        page_size=_page_size(params.get("page_size")),
        page_token=params.get("page_token") or None,
        newest_first=_newest_first(params.get("order_by")),
    )
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        page = remediations.list_remediations(session, caller, cluster_id, instance_id, filters)
        alerts = recovery.alerts_of(session, [r.id for r in page.items])
        body = {
            "remediations": [presenters.remediation(r, alerts[r.id]) for r in page.items],
            "has_next": bool(page.next_page_token),
            "next_page_token": page.next_page_token,
        }
    return presenters.json_response(body)


@router.get(BASE + "/{remediation_id}", response_model=RemediationResponse)
def retrieve_remediation(
    cluster_id: str,
    instance_id: str,
    remediation_id: str,
    request: Request,
    caller: Caller = Depends(current_caller),
) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        row = remediations.get_remediation(session, caller, cluster_id, instance_id, remediation_id)
        result = presenters.remediation(row, recovery.alerts_of(session, [row.id])[row.id])
    return presenters.json_response(result)


def _act(
    request: Request,
    caller: Caller,
    ids: tuple[str, str, str],
    action: Callable[[Session, RemediationRow], RemediationRow],
) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = remediations.get_remediation(session, caller, *ids, for_update=True)
        acted = action(session, row)
        result = presenters.remediation(acted, recovery.alerts_of(session, [acted.id])[acted.id])
    state.nudge()
    return presenters.json_response(result)


@router.post(
    BASE + "/{remediation_id}/approve",
    response_model=RemediationResponse,
    openapi_extra=request_body(ApproveRemediationRequest, required=False),
)
def approve_remediation(
    cluster_id: str,
    instance_id: str,
    remediation_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(current_caller),
) -> Response:
    req = validate(ApproveRemediationRequest, body)
    now = api_state(request).clock.now()
    return _act(
        request,
        caller,
        (cluster_id, instance_id, remediation_id),
        lambda s, r: remediations.approve(
            s, caller, r, comment=req.comment, mode=req.mode, now=now
        ),
    )


@router.post(
    BASE + "/{remediation_id}/reject",
    response_model=RemediationResponse,
    openapi_extra=request_body(RejectRemediationRequest, required=False),
)
def reject_remediation(
    cluster_id: str,
    instance_id: str,
    remediation_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(current_caller),
) -> Response:
    req = validate(RejectRemediationRequest, body)
    now = api_state(request).clock.now()
    return _act(
        request,
        caller,
        (cluster_id, instance_id, remediation_id),
        lambda s, r: remediations.reject(s, caller, r, comment=req.comment, now=now),
    )


@router.post(BASE + "/{remediation_id}/cancel", response_model=RemediationResponse)
def cancel_remediation(
    cluster_id: str,
    instance_id: str,
    remediation_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(current_caller),
) -> Response:
    now = api_state(request).clock.now()
    return _act(
        request,
        caller,
        (cluster_id, instance_id, remediation_id),
        lambda s, r: remediations.cancel(s, caller, r, now=now),
    )

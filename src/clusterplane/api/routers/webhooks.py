"""`/v1/clusterplane/webhooks[...]`: register endpoints, see and replay deliveries.

A clusterplane extension, not in Together's API (services/events/webhooks.py has the rules;
docs/webhooks.md the contract). The create answer is the only one carrying the secret.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, comma_list, current_caller, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.schemas.webhooks import (
    CreateWebhookRequest,
    DeliveryListResponse,
    DeliveryResponse,
    UpdateWebhookRequest,
    WebhookCreatedResponse,
    WebhookListResponse,
    WebhookResponse,
)
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.domain.webhooks import DeliveryState
from clusterplane.services.access.auth import Caller
from clusterplane.services.events import webhooks

router = APIRouter(prefix="/v1/clusterplane/webhooks", tags=["clusterplane webhooks"])
ONE = "/{webhook_id}"
DELIVERY = ONE + "/deliveries/{delivery_id}"


@router.post(
    "", response_model=WebhookCreatedResponse, openapi_extra=request_body(CreateWebhookRequest)
)
def create_webhook(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(current_caller)
) -> Response:
    req = validate(CreateWebhookRequest, body)
    state = api_state(request)
    spec = webhooks.EndpointSpec(req.url, req.kinds, req.description, req.enabled)
    with transaction(state.sessions) as session:
        row, secret = webhooks.create_endpoint(
            session,
            caller,
            spec,
            project_id=req.project_id,
            fleet=req.fleet,
            settings=state.settings.webhooks,
            box=state.secrets,
            now=state.wall_clock.now(),
        )
        result = {**webhooks.endpoint_document(row), "secret": secret}
    return presenters.json_response(result)


@router.get("", response_model=WebhookListResponse)
def list_webhooks(
    request: Request,
    project_id: str | None = Query(None, min_length=1, max_length=128),
    limit: int = Query(webhooks.DEFAULT_PAGE_SIZE, ge=1, le=webhooks.MAX_PAGE_SIZE),
    cursor: str | None = Query(None, max_length=300),
    caller: Caller = Depends(current_caller),
) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        page = webhooks.list_endpoints(
            session, caller, project_id=project_id, limit=limit, cursor=cursor
        )
        items = [webhooks.endpoint_document(row) for row in page.items]
    return presenters.json_response({"webhooks": items, "next_cursor": page.next_cursor})


@router.get(ONE, response_model=WebhookResponse)
def get_webhook(
    webhook_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        row = webhooks.get_endpoint(session, caller, webhook_id)
        result = webhooks.endpoint_document(row)
    return presenters.json_response(result)


@router.patch(ONE, response_model=WebhookResponse, openapi_extra=request_body(UpdateWebhookRequest))
def update_webhook(
    webhook_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(current_caller),
) -> Response:
    req = validate(UpdateWebhookRequest, body)
    changes = {name: getattr(req, name) for name in req.model_fields_set}
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = webhooks.get_endpoint(session, caller, webhook_id, for_update=True)
        webhooks.update_endpoint(
            session,
            row,
            changes={k: v for k, v in changes.items() if v is not None},
            settings=state.settings.webhooks,
            now=state.wall_clock.now(),
        )
        result = webhooks.endpoint_document(row)
    return presenters.json_response(result)


@router.delete(ONE, response_model=WebhookResponse)
def delete_webhook(
    webhook_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = webhooks.get_endpoint(session, caller, webhook_id, for_update=True)
        webhooks.delete_endpoint(session, row, state.wall_clock.now())
        result = webhooks.endpoint_document(row)
    return presenters.json_response(result)


@router.get(ONE + "/deliveries", response_model=DeliveryListResponse)
def list_deliveries(
    webhook_id: str,
    request: Request,
    state_filter: list[str] | None = Query(None, alias="state"),
    limit: int = Query(webhooks.DEFAULT_PAGE_SIZE, ge=1, le=webhooks.MAX_PAGE_SIZE),
    cursor: str | None = Query(None, max_length=300),
    caller: Caller = Depends(current_caller),
) -> Response:
    states = comma_list(state_filter, DeliveryState, "state")
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        endpoint = webhooks.get_endpoint(session, caller, webhook_id)
        page = webhooks.list_deliveries(
            session, endpoint, states=states, limit=limit, cursor=cursor
        )
        items = [webhooks.delivery_document(row) for row in page.items]
    return presenters.json_response({"deliveries": items, "next_cursor": page.next_cursor})


@router.get(DELIVERY, response_model=DeliveryResponse)
def get_delivery(
    webhook_id: str, delivery_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        endpoint = webhooks.get_endpoint(session, caller, webhook_id)
        result = webhooks.delivery_document(webhooks.get_delivery(session, endpoint, delivery_id))
    return presenters.json_response(result)


@router.post(DELIVERY + "/replay", response_model=DeliveryResponse)
def replay_delivery(
    webhook_id: str,
    delivery_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(current_caller),
) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        endpoint = webhooks.get_endpoint(session, caller, webhook_id)
        row = webhooks.get_delivery(session, endpoint, delivery_id, for_update=True)
        webhooks.replay(session, row, settings=state.settings.webhooks, now=state.wall_clock.now())
        result = webhooks.delivery_document(row)
    state.nudge()
    return presenters.json_response(result)

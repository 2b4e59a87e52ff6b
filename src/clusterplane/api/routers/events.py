"""`GET /v1/clusterplane/events`: the audit trail, filtered and paged
(services/events/event_log.py).

A clusterplane extension, not in Together's API. Filters: `project_id`, `cluster_id`,
`node` (a node's name as on the wire `node_id`, or its `instance_id`), `kind` (repeatable
or comma-separated: `cluster.phase`, `cluster.*`), `since` and `until` (RFC 3339, fleet
time, `until` excluded); `limit` (1-500) and `cursor` page; `order` is `desc` (newest
first, the default) or `asc`. A bad filter is a 400 naming it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic_core import PydanticCustomError

from clusterplane.api import presenters
from clusterplane.api.deps import api_state, current_caller
from clusterplane.api.schemas import parse_wire_datetime
from clusterplane.api.schemas.webhooks import EventListResponse
from clusterplane.db.engine import read_transaction
from clusterplane.errors import InvalidRequest
from clusterplane.services.access.auth import Caller
from clusterplane.services.events import event_log

router = APIRouter(prefix="/v1/clusterplane", tags=["clusterplane events"])


@router.get("/events", response_model=EventListResponse)
def list_events(
    request: Request,
    project_id: str | None = Query(None, min_length=1, max_length=128),
    cluster_id: str | None = Query(None, min_length=1, max_length=128),
    node: str | None = Query(None, min_length=1, max_length=128),
    kind: list[str] | None = Query(None),
    since: str | None = Query(None, max_length=40, description="RFC 3339, included"),
    until: str | None = Query(None, max_length=40, description="RFC 3339, excluded"),
    limit: int = Query(event_log.DEFAULT_PAGE_SIZE, ge=1, le=event_log.MAX_PAGE_SIZE),
    cursor: str | None = Query(None, max_length=200),
    order: Literal["desc", "asc"] = Query("desc"),
    caller: Caller = Depends(current_caller),
) -> Response:
    kinds = [part.strip() for value in kind or [] for part in value.split(",") if part.strip()]
    flt = event_log.EventFilter(
        project_id=project_id,
        cluster_id=cluster_id,
        node=node,
        kinds=kinds,
        since=_when(since, "since"),
        until=_when(until, "until"),
        limit=limit,
        cursor=cursor,
        newest_first=order == "desc",
    )
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        page = event_log.list_events(session, caller, flt)
    body = {"events": page.events, "next_cursor": page.next_cursor, "has_more": page.has_more}
    return presenters.json_response(body)


def _when(value: str | None, param: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_wire_datetime(value)
    except PydanticCustomError as exc:
        raise InvalidRequest(f"{param} {exc.message()}", param=param) from None

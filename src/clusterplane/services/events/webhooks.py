"""Webhook endpoints and their deliveries, as callers manage them (docs/webhooks.md).

A project's endpoint (registered with a key of the project, or any project the key's user
belongs to) is sent that project's events; an operator's fleet-wide endpoint (admin keys,
`fleet: true`) is sent every event, the fleet's own (hosts) included. Admin keys see and
manage every endpoint; other keys those of their projects. The signing secret is made
here, shown once in the create answer and kept sealed (`SecretBox`).

Bounds: `max_endpoints_per_project` endpoints per project (and fleet-wide); a replay is
refused while the project's outbox is full (`max_pending_per_project`). Deleting an
endpoint cancels what it still had to send. Lists page newest first behind a cursor.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from clusterplane.clock import utc
from clusterplane.db.rows import ProjectRow, WebhookDeliveryRow, WebhookEndpointRow
from clusterplane.domain.webhooks import (
    AddressPolicy,
    DeliveryState,
    parse_networks,
    parse_receiver,
)
from clusterplane.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from clusterplane.services.access.auth import Caller, require_admin, resolve_project
from clusterplane.services.access.ids import new_prefixed
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.events.event_log import check_kinds
from clusterplane.settings import WebhookSettings

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_KINDS = 20
PENDING = DeliveryState.PENDING


def policy(settings: WebhookSettings) -> AddressPolicy:
    return AddressPolicy(
        parse_networks(settings.allowed_networks), parse_networks(settings.http_networks)
    )


def secret_context(endpoint_id: str) -> str:
    return f"webhook:{endpoint_id}:secret"


@dataclass(frozen=True)
class EndpointSpec:
    url: str
    kinds: Sequence[str]
    description: str = ""
    enabled: bool = True


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def _kinds(kinds: Sequence[str]) -> list[str]:
    if not kinds:
        raise InvalidRequest("kinds must name at least one kind (or '*')", param="kinds")
    if len(kinds) > MAX_KINDS:
        raise InvalidRequest(f"kinds: at most {MAX_KINDS}", param="kinds")
    return check_kinds(kinds, "kinds")


def create_endpoint(
    session: Session,
    caller: Caller,
    spec: EndpointSpec,
    *,
    project_id: str | None,
    fleet: bool,
    settings: WebhookSettings,
    box: SecretBox,
    now: datetime,
) -> tuple[WebhookEndpointRow, str]:
    """A new endpoint and its secret (shown to the caller this once)."""
    owner = _owner(caller, project_id, fleet)
    kinds = _kinds(spec.kinds)
    parse_receiver(spec.url, policy(settings))
    if owner is not None:
        session.execute(select(ProjectRow.id).where(ProjectRow.id == owner).with_for_update())
    count = session.scalar(
        select(func.count())
        .select_from(WebhookEndpointRow)
        .where(_owned_by(owner), WebhookEndpointRow.deleted_at.is_(None))
    )
    limit = settings.max_endpoints_per_project
    if (count or 0) >= limit:
        whose = "the fleet" if owner is None else f"project '{owner}'"
        raise QuotaExceeded(f"{whose} has {limit} webhook endpoints already (the limit)")
    endpoint_id = new_prefixed("whk")
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = WebhookEndpointRow(
        id=endpoint_id,
        project_id=owner,
        url=spec.url,
        kinds=kinds,
        description=spec.description,
        secret=box.seal(secret, context=secret_context(endpoint_id)),
        enabled=spec.enabled,
        created_by=caller.api_key_id,
        dropped=0,
        created_at=now,
        updated_at=now,
        deleted_at=None,
    )
    session.add(row)
    return row, secret


def _owner(caller: Caller, project_id: str | None, fleet: bool) -> str | None:
    if fleet:
        require_admin(caller)
        if project_id is not None:
            raise InvalidRequest("a fleet-wide endpoint has no project_id", param="project_id")
        return None
    return resolve_project(caller, project_id)


def _owned_by(owner: str | None) -> Any:
    if owner is None:
        return WebhookEndpointRow.project_id.is_(None)
    return WebhookEndpointRow.project_id == owner


def get_endpoint(
    session: Session, caller: Caller, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpointRow:
    row = session.get(WebhookEndpointRow, endpoint_id, with_for_update=for_update)
    if row is None or row.deleted_at is not None or not _sees(caller, row.project_id):
        raise NotFound(f"webhook '{endpoint_id}' not found", param="webhook_id")
    return row


def _sees(caller: Caller, project_id: str | None) -> bool:
    return caller.is_admin or (project_id is not None and caller.can_see(project_id))


def list_endpoints(
    session: Session, caller: Caller, *, project_id: str | None, limit: int, cursor: str | None
) -> Page:
    query = select(WebhookEndpointRow).where(WebhookEndpointRow.deleted_at.is_(None))
    if project_id is not None:
        if not _sees(caller, project_id):
            raise NotFound(f"project '{project_id}' not found", param="project_id")
        query = query.where(WebhookEndpointRow.project_id == project_id)
    elif not caller.is_admin:
        query = query.where(WebhookEndpointRow.project_id.in_(sorted(caller.member_project_ids)))
    return _page(session, query, WebhookEndpointRow, limit, cursor)


def update_endpoint(
    session: Session,
    row: WebhookEndpointRow,
    *,
    changes: dict[str, Any],
    settings: WebhookSettings,
    now: datetime,
) -> WebhookEndpointRow:
    """Apply the fields present in `changes` (url, kinds, description, enabled)."""
    if "url" in changes:
        parse_receiver(changes["url"], policy(settings))
        row.url = changes["url"]
    if "kinds" in changes:
        row.kinds = _kinds(changes["kinds"])
    if "description" in changes:
        row.description = changes["description"]
    if "enabled" in changes:
        row.enabled = changes["enabled"]
    row.updated_at = now
    return row


def delete_endpoint(session: Session, row: WebhookEndpointRow, now: datetime) -> None:
    """Soft delete; what it still had to send is cancelled."""
    row.deleted_at = row.updated_at = now
    session.execute(
        update(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.endpoint_id == row.id, WebhookDeliveryRow.state == PENDING)
        .values(
            state=DeliveryState.CANCELLED, finished_at=now, next_attempt_at=None, updated_at=now
        )
        .execution_options(synchronize_session=False)
    )


def list_deliveries(
    session: Session,
    endpoint: WebhookEndpointRow,
    *,
    states: Sequence[DeliveryState],
    limit: int,
    cursor: str | None,
) -> Page:
    query = select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint.id)
    if states:
        query = query.where(WebhookDeliveryRow.state.in_([str(s) for s in states]))
    return _page(session, query, WebhookDeliveryRow, limit, cursor)


def get_delivery(
    session: Session, endpoint: WebhookEndpointRow, delivery_id: str, *, for_update: bool = False
) -> WebhookDeliveryRow:
    row = session.get(WebhookDeliveryRow, delivery_id, with_for_update=for_update)
    if row is None or row.endpoint_id != endpoint.id:
        raise NotFound(f"delivery '{delivery_id}' not found", param="delivery_id")
    return row


def replay(
    session: Session, row: WebhookDeliveryRow, *, settings: WebhookSettings, now: datetime
) -> WebhookDeliveryRow:
    """Queue a finished delivery again (a fresh round of attempts); a pending one is left
    as it is, so a repeated replay does not send twice."""
    if row.state == PENDING:
        return row
    waiting = session.scalar(
        select(func.count())
        .select_from(WebhookDeliveryRow)
        .where(_same_project(row.project_id), WebhookDeliveryRow.state == PENDING)
    )
    if (waiting or 0) >= settings.max_pending_per_project:
        raise Conflict(
            f"{waiting} deliveries of this project are waiting already (the limit); "
            "replay when they are sent"
        )
    row.state = PENDING
    row.failures = 0
    row.replays += 1
    row.finished_at = None
    row.next_attempt_at = now
    row.updated_at = now
    return row


def _same_project(project_id: str | None) -> Any:
    if project_id is None:
        return WebhookDeliveryRow.project_id.is_(None)
    return WebhookDeliveryRow.project_id == project_id


def _page(
    session: Session, query: Select[Any], row_type: Any, limit: int, cursor: str | None
) -> Page:
    """Newest first by (created_at, id), after `cursor`."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE_SIZE}", param="limit")
    after = _decode(cursor)
    if after is not None:
        at, row_id = after
        query = query.where(
            or_(row_type.created_at < at, (row_type.created_at == at) & (row_type.id < row_id))
        )
    rows = list(
        session.scalars(
            query.order_by(row_type.created_at.desc(), row_type.id.desc()).limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows and more else None
    return Page(rows, _encode(last.created_at, last.id) if last is not None else None)


def _encode(at: datetime, row_id: str) -> str:
    raw = f"{utc(at).isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, row_id = text.partition("|")
        when = utc(datetime.fromisoformat(at))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("cursor is not one this server handed out", param="cursor") from None
    if not row_id:
        raise InvalidRequest("cursor is not one this server handed out", param="cursor")
    return when, row_id


def endpoint_document(row: WebhookEndpointRow) -> dict[str, Any]:
    """An endpoint as clients see it: never its secret."""
    return {
        "id": row.id,
        "project_id": row.project_id,
        "fleet": row.project_id is None,
        "url": row.url,
        "kinds": list(row.kinds),
        "description": row.description,
        "enabled": row.enabled,
        "dropped_events": row.dropped,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def delivery_document(row: WebhookDeliveryRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.endpoint_id,
        "event_id": row.event_id,
        "kind": row.kind,
        "state": row.state,
        "failures": row.failures,
        "replays": row.replays,
        "attempts": list(row.attempts),
        "next_attempt_at": row.next_attempt_at,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
    }

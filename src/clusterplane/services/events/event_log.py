"""Reading the audit trail: events by project, cluster, node, kind and time, a page at a time.

Who sees what: a key sees the events of the projects it belongs to; an admin key sees
every event, the fleet's own (hosts) included. Pages are keyset pages over the event id
(newest first unless asked otherwise) behind an opaque cursor, so a page never shifts
while new events arrive. `event_document` is an event as the API and webhook deliveries
show it.

Ids are given when an event is inserted; on PostgreSQL an event can become visible just
after one with a higher id (its transaction committed later), so a reader tailing the log
oldest-first should re-read a short overlap. Webhook fan-out does not depend on id order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, EventRow, NodeRow
from clusterplane.domain.events import check_pattern, kind_of, selected
from clusterplane.errors import InvalidRequest, NotFound
from clusterplane.services.access.auth import Caller

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_KIND_FILTERS = 20
_CURSOR_PREFIX = "ev1:"


@dataclass(frozen=True)
class EventFilter:
    project_id: str | None = None
    cluster_id: str | None = None
    node: str | None = None  # a node's name (its wire node_id), instance id or row id
    kinds: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None
    newest_first: bool = True


@dataclass(frozen=True)
class NodeNames:
    node_name: str
    instance_id: str


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    next_cursor: str | None
    has_more: bool


def check_kinds(kinds: Sequence[str], param: str) -> list[str]:
    """The patterns, each checked against the catalogue; a 400 names a bad one."""
    if len(kinds) > MAX_KIND_FILTERS:
        raise InvalidRequest(f"{param}: at most {MAX_KIND_FILTERS} kinds", param=param)
    for pattern in kinds:
        why = check_pattern(pattern)
        if why is not None:
            raise InvalidRequest(f"{param}: {why}", param=param)
    return list(dict.fromkeys(kinds))


def list_events(session: Session, caller: Caller, flt: EventFilter) -> EventPage:
    if not 1 <= flt.limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE_SIZE}", param="limit")
    if flt.since is not None and flt.until is not None and flt.since >= flt.until:
        raise InvalidRequest("since must be earlier than until", param="since")
    query = _scoped(select(EventRow), caller, flt.project_id)
    if flt.cluster_id is not None:
        query = query.where(EventRow.cluster_id == flt.cluster_id)
    if flt.node is not None:
        query = query.where(EventRow.node_row_id.in_(_node_ids(session, caller, flt)))
    pairs = selected(check_kinds(flt.kinds, "kind"))
    if pairs:
        query = query.where(or_(*(_kind_clause(obj, what) for obj, what in pairs)))
    if flt.since is not None:
        query = query.where(EventRow.at >= flt.since)
    if flt.until is not None:
        query = query.where(EventRow.at < flt.until)
    after = _decode_cursor(flt.cursor)
    if after is not None:
        query = query.where(EventRow.id < after if flt.newest_first else EventRow.id > after)
    order = EventRow.id.desc() if flt.newest_first else EventRow.id.asc()
    rows = list(session.scalars(query.order_by(order).limit(flt.limit + 1)))
    has_more = len(rows) > flt.limit
    rows = rows[: flt.limit]
    names = node_names(session, [r.node_row_id for r in rows if r.node_row_id])
    last = rows[-1].id if rows else after
    return EventPage(
        events=[event_document(r, names.get(r.node_row_id or "")) for r in rows],
        next_cursor=_encode_cursor(last) if last is not None else None,
        has_more=has_more,
    )


def _scoped(query: Select[Any], caller: Caller, project_id: str | None) -> Select[Any]:
    if project_id is not None:
        if not (caller.is_admin or caller.can_see(project_id)):
            raise NotFound(f"project '{project_id}' not found", param="project_id")
        return query.where(EventRow.project_id == project_id)
    if caller.is_admin:
        return query
    return query.where(EventRow.project_id.in_(sorted(caller.member_project_ids)))


def _node_ids(session: Session, caller: Caller, flt: EventFilter) -> list[str]:
    """Row ids of the nodes `flt.node` names, among the clusters the caller may see."""
    name = flt.node or ""
    query = (
        select(NodeRow.id)
        .join(ClusterRow, ClusterRow.id == NodeRow.cluster_id)
        .where(or_(NodeRow.node_name == name, NodeRow.instance_id == name, NodeRow.id == name))
    )
    if flt.cluster_id is not None:
        query = query.where(NodeRow.cluster_id == flt.cluster_id)
    if flt.project_id is not None:
        query = query.where(ClusterRow.project_id == flt.project_id)
    elif not caller.is_admin:
        query = query.where(ClusterRow.project_id.in_(sorted(caller.member_project_ids)))
    return list(session.scalars(query.limit(100)))


def _kind_clause(obj: str, what: str | None) -> Any:
    if what is None:
        return EventRow.object_type == obj
    return and_(EventRow.object_type == obj, EventRow.kind == what)


def _encode_cursor(event_id: int) -> str:
    raw = f"{_CURSOR_PREFIX}{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    digits = text.removeprefix(_CURSOR_PREFIX)
    valid = digits.isascii() and digits.isdigit() and len(digits) <= 18
    if not text.startswith(_CURSOR_PREFIX) or not valid:
        raise InvalidRequest("cursor is not one this server handed out", param="cursor")
    return int(digits)


def node_names(session: Session, node_row_ids: Sequence[str]) -> dict[str, NodeNames]:
    if not node_row_ids:
        return {}
    rows = session.execute(
        select(NodeRow.id, NodeRow.node_name, NodeRow.instance_id).where(
            NodeRow.id.in_(sorted(set(node_row_ids)))
        )
    )
    return {row_id: NodeNames(name, instance) for row_id, name, instance in rows}


def event_document(row: EventRow, node: NodeNames | None) -> dict[str, Any]:
    """An event as clients see it (API and webhook bodies): datetimes left to the encoder."""
    return {
        "id": row.id,
        "kind": kind_of(row.object_type, row.kind),
        "object_type": row.object_type,
        "object_id": row.object_id,
        "message": row.message,
        "time": row.at,
        "project_id": row.project_id,
        "cluster_id": row.cluster_id,
        "node_id": node.node_name if node else None,
        "instance_id": node.instance_id if node else None,
    }

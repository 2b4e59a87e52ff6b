"""Remediation use cases: request a repair of one instance, list, review and cancel.

The state machine of reviews (spec §2.8): a manual request starts `PENDING`; an automated
one starts `PENDING_APPROVAL`. Approve: PENDING_APPROVAL -> PENDING. Reject:
PENDING_APPROVAL -> CANCELLED. Cancel: PENDING_APPROVAL or PENDING -> CANCELLED. Anything
else is a 400 (failed precondition). Lists page by an opaque keyset token over
(create_time, id), so pages stay stable while new remediations arrive.

A node has at most one open (not terminal) remediation: a second request is a 409 naming
the open one (health signals link to it instead, `services.health`). A partial unique
index (`OPEN_PER_NODE`) holds it against concurrent writers on other replicas too.
Nothing stays open with nothing to repair (`close_left_behind`): a removed node's waiting
remediations, and every one of a deleted cluster, are cancelled in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clusterplane.clock import utc
from clusterplane.db.rows import ClusterRow, NodeRow, RemediationRow
from clusterplane.domain.enums import (
    NodeRole,
    RemediationMode,
    RemediationState,
    RemediationTrigger,
)
from clusterplane.domain.remediation import REVIEW_TRANSITIONS, TERMINAL, review
from clusterplane.errors import Conflict, FailedPrecondition, InvalidRequest, NotFound
from clusterplane.services.access.auth import Caller
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.clusters.clusters import get_cluster
from clusterplane.services.events.events import record_event, scope_in

ALL_INSTANCES = "-"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
OPEN_PER_NODE = "uq_remediations_open_per_node"
S = RemediationState


@dataclass(frozen=True)
class RemediationFilter:
    states: Sequence[RemediationState] = ()
    modes: Sequence[RemediationMode] = ()
    triggers: Sequence[RemediationTrigger] = ()
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = None
    newest_first: bool = True


@dataclass(frozen=True)
class RemediationPage:
    items: list[RemediationRow]
    next_page_token: str


def _instance(session: Session, cluster_id: str, instance_id: str) -> NodeRow:
    node = session.scalar(
        select(NodeRow).where(NodeRow.cluster_id == cluster_id, NodeRow.instance_id == instance_id)
    )
    if node is None or node.role != NodeRole.GPU_WORKER:
        raise NotFound(
            f"instance '{instance_id}' not found in cluster '{cluster_id}'", param="instance_id"
        )
    return node


def _new_row(
    node: NodeRow,
    *,
    mode: RemediationMode,
    state: RemediationState,
    trigger: RemediationTrigger,
    reason: str | None,
    requested_by: str,
    now: datetime,
    remediation_id: str | None = None,
) -> RemediationRow:
    return RemediationRow(
        id=remediation_id or new_uuid(),
        cluster_id=node.cluster_id,
        node_row_id=node.id,
        instance_id=node.instance_id,
        instance_name=node.node_name,
        mode=mode,
        state=state,
        trigger=trigger,
        reason=reason,
        requested_by=requested_by,
        create_time=now,
        update_time=now,
    )


def _add(session: Session, row: RemediationRow, kind: str, message: str, now: datetime) -> None:
    session.add(row)
    record_event(
        session,
        object_type="remediation",
        object_id=row.id,
        kind=kind,
        message=message,
        at=now,
        scope=scope_in(session, row.cluster_id, row.node_row_id),
    )


def find_open_remediation(session: Session, node_row_id: str) -> RemediationRow | None:
    """The node's open (not yet terminal) remediation, if any: there is at most one."""
    return session.scalar(
        select(RemediationRow)
        .where(RemediationRow.node_row_id == node_row_id, RemediationRow.state.not_in(TERMINAL))
        .order_by(RemediationRow.create_time.desc())
        .limit(1)
    )


def _refuse_second(session: Session, node: NodeRow) -> None:
    """409 when the node already has an open remediation, naming it."""
    open_row = find_open_remediation(session, node.id)
    if open_row is not None:
        raise Conflict(
            f"instance '{node.instance_id}' already has an open remediation "
            f"'{open_row.id}' ({open_row.state}); wait for it to end or cancel it first",
            param="instance_id",
            code="remediation_already_open",
        )


def _insert_only(session: Session, node: NodeRow, row: RemediationRow) -> None:
    """Insert `row` as the node's one open remediation; 409 if another writer's came first."""
    _refuse_second(session, node)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        _refuse_second(session, node)  # committed meanwhile by a concurrent request
        raise


def create_remediation(
    session: Session,
    caller: Caller,
    cluster_id: str,
    instance_id: str,
    *,
    mode: RemediationMode,
    reason: str | None,
    now: datetime,
    remediation_id: str | None = None,
) -> RemediationRow:
    cluster = get_cluster(session, caller, cluster_id)
    if remediation_id is not None:
        existing = session.get(RemediationRow, remediation_id)
        if existing is not None:
            if existing.cluster_id != cluster.id or existing.instance_id != instance_id:
                raise InvalidRequest(
                    "remediation_id is already used for another instance", param="remediation_id"
                )
            return existing
    node = _instance(session, cluster.id, instance_id)
    if node.deleted_at is not None:
        raise FailedPrecondition(f"instance '{instance_id}' has been deleted", param="instance_id")
    row = _new_row(
        node,
        mode=mode,
        state=S.PENDING,
        trigger=RemediationTrigger.MANUAL,
        reason=reason,
        requested_by=caller.user_name,
        now=now,
        remediation_id=remediation_id,
    )
    row.next_reconcile_at = now
    _insert_only(session, node, row)
    _add(session, row, "created", f"{mode} on {node.node_name} by {caller.user_name}", now)
    return row


def get_remediation(
    session: Session,
    caller: Caller,
    cluster_id: str,
    instance_id: str,
    remediation_id: str,
    *,
    for_update: bool = False,
) -> RemediationRow:
    """The remediation, locked against concurrent reviews when `for_update` (PostgreSQL;
    SQLite's writers are serialised anyway); NotFound when the caller cannot see it."""
    cluster = get_cluster(session, caller, cluster_id)
    row = session.get(RemediationRow, remediation_id, with_for_update=for_update)
    if (
        row is None
        or row.cluster_id != cluster.id
        or instance_id not in (ALL_INSTANCES, row.instance_id)
    ):
        raise NotFound(f"remediation '{remediation_id}' not found", param="remediation_id")
    return row


def _encode_token(row: RemediationRow) -> str:
    raw = f"{row.create_time.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        if "\x00" in row_id:  # no id holds NUL (PostgreSQL text cannot)
            raise ValueError("NUL in page_token")
        return utc(datetime.fromisoformat(stamp)), row_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            "page_token is not a token this server issued", param="page_token"
        ) from None


def list_remediations(
    session: Session,
    caller: Caller,
    cluster_id: str,
    instance_id: str,
    filters: RemediationFilter,
) -> RemediationPage:
    cluster = get_cluster(session, caller, cluster_id)
    if not 1 <= filters.page_size <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"page_size must be between 1 and {MAX_PAGE_SIZE}", param="page_size")
    query = select(RemediationRow).where(RemediationRow.cluster_id == cluster.id)
    if instance_id != ALL_INSTANCES:
        _instance(session, cluster.id, instance_id)
        query = query.where(RemediationRow.instance_id == instance_id)
    if filters.states:
        query = query.where(RemediationRow.state.in_(list(filters.states)))
    if filters.modes:
        query = query.where(RemediationRow.mode.in_(list(filters.modes)))
    if filters.triggers:
        query = query.where(RemediationRow.trigger.in_(list(filters.triggers)))
    ct, rid = RemediationRow.create_time, RemediationRow.id
    if filters.page_token:
        stamp, last_id = _decode_token(filters.page_token)
        if filters.newest_first:
            query = query.where(or_(ct < stamp, and_(ct == stamp, rid < last_id)))
        else:
            query = query.where(or_(ct > stamp, and_(ct == stamp, rid > last_id)))
    order = (ct.desc(), rid.desc()) if filters.newest_first else (ct.asc(), rid.asc())
    rows = list(session.scalars(query.order_by(*order).limit(filters.page_size + 1)))
    has_next = len(rows) > filters.page_size
    rows = rows[: filters.page_size]
    return RemediationPage(items=rows, next_page_token=_encode_token(rows[-1]) if has_next else "")


def _review(row: RemediationRow, caller: Caller, comment: str | None, now: datetime) -> None:
    row.reviewed_by = caller.user_name
    row.review_time = now
    row.review_comment = comment
    row.update_time = now


def _transition(row: RemediationRow, action: str) -> RemediationState:
    target = review(action, RemediationState(row.state))
    if target is None:
        names = " or ".join(sorted(REVIEW_TRANSITIONS[action][0]))
        raise FailedPrecondition(
            f"cannot {action} a remediation in state {row.state}; it must be {names}",
            param="remediation_id",
        )
    return target


def approve(
    session: Session,
    caller: Caller,
    row: RemediationRow,
    *,
    comment: str | None,
    mode: RemediationMode | None,
    now: datetime,
) -> RemediationRow:
    target = _transition(row, "approve")
    if mode == RemediationMode.HOST_POWER_CYCLE:
        raise InvalidRequest(
            "REMEDIATION_MODE_HOST_POWER_CYCLE cannot be chosen on approval", param="mode"
        )
    if mode is not None:
        row.mode = mode
    row.state = target
    row.next_reconcile_at = now
    _review(row, caller, comment, now)
    record_event(
        session,
        object_type="remediation",
        object_id=row.id,
        kind="approved",
        message=f"by {caller.user_name}",
        at=now,
        scope=scope_in(session, row.cluster_id, row.node_row_id),
    )
    return row


def reject(
    session: Session, caller: Caller, row: RemediationRow, *, comment: str | None, now: datetime
) -> RemediationRow:
    row.state = _transition(row, "reject")
    row.end_time = now
    _review(row, caller, comment, now)
    record_event(
        session,
        object_type="remediation",
        object_id=row.id,
        kind="rejected",
        message=f"by {caller.user_name}",
        at=now,
        scope=scope_in(session, row.cluster_id, row.node_row_id),
    )
    return row


def cancel(
    session: Session, caller: Caller, row: RemediationRow, *, now: datetime
) -> RemediationRow:
    row.state = _transition(row, "cancel")
    row.end_time = now
    row.update_time = now
    row.next_reconcile_at = None
    record_event(
        session,
        object_type="remediation",
        object_id=row.id,
        kind="cancelled",
        message=f"by {caller.user_name}",
        at=now,
        scope=scope_in(session, row.cluster_id, row.node_row_id),
    )
    return row


def nodes_with_waiting_repairs(session: Session, cluster_id: str) -> set[str]:
    """The cluster's nodes with a waiting (proposed, or in its grace period) remediation:
    those whose removal `close_left_behind` has something to cancel for."""
    waiting = session.scalars(
        select(RemediationRow.node_row_id).where(
            RemediationRow.cluster_id == cluster_id,
            RemediationRow.state.in_([S.PENDING_APPROVAL, S.PENDING]),
        )
    )
    return {node_row_id for node_row_id in waiting if node_row_id is not None}


def close_left_behind(
    session: Session, *, cluster_id: str, node_row_id: str | None, why: str, now: datetime
) -> None:
    """Cancel what a removal leaves with nothing to repair: the waiting (proposed or in
    their grace period) remediations of the removed node `node_row_id`, or, when it is
    None, every open remediation of the deleted cluster."""
    query = select(RemediationRow).where(
        RemediationRow.cluster_id == cluster_id, RemediationRow.state.not_in(TERMINAL)
    )
    if node_row_id is not None:
        query = query.where(
            RemediationRow.node_row_id == node_row_id,
            RemediationRow.state.in_([S.PENDING_APPROVAL, S.PENDING]),
        )
    for row in session.scalars(query):
        row.state = S.CANCELLED
        row.end_time = row.update_time = now
        row.next_reconcile_at = None
        record_event(
            session,
            object_type="remediation",
            object_id=row.id,
            kind="cancelled",
            message=why,
            at=now,
            scope=scope_in(session, row.cluster_id, row.node_row_id),
        )


HEALTH_CHECKER = "clusterplane health checker"


def create_recommendation(
    session: Session,
    *,
    cluster_id: str,
    instance_id: str,
    mode: RemediationMode,
    reason: str | None,
    now: datetime,
    requested_by: str = HEALTH_CHECKER,
) -> RemediationRow:
    """An automated repair proposal: PENDING_APPROVAL until a member approves or rejects."""
    cluster = session.get(ClusterRow, cluster_id)
    if cluster is None or cluster.deleted_at is not None:
        raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
    node = _instance(session, cluster.id, instance_id)
    if node.deleted_at is not None:
        raise FailedPrecondition(f"instance '{instance_id}' has been deleted", param="instance_id")
    _refuse_second(session, node)
    return recommend(session, node, mode=mode, reason=reason, now=now, requested_by=requested_by)


def recommend(
    session: Session,
    node: NodeRow,
    *,
    mode: RemediationMode,
    reason: str | None,
    now: datetime,
    requested_by: str = HEALTH_CHECKER,
) -> RemediationRow:
    """An automated proposal for a node the caller has already loaded and checked (it has
    no open remediation; a concurrent writer's makes the commit fail, and the caller's
    retry links to it)."""
    row = _new_row(
        node,
        mode=mode,
        state=S.PENDING_APPROVAL,
        trigger=RemediationTrigger.AUTOMATED,
        reason=reason,
        requested_by=requested_by,
        now=now,
    )
    _add(
        session,
        row,
        "recommended",
        f"{mode} on {node.node_name}: {reason or 'no reason given'}",
        now,
    )
    return row


def latest_by_node(session: Session, node_row_ids: list[str]) -> dict[str, RemediationRow]:
    if not node_row_ids:
        return {}
    latest: dict[str, RemediationRow] = {}
    rows = session.scalars(
        select(RemediationRow)
        .where(RemediationRow.node_row_id.in_(node_row_ids))
        .order_by(RemediationRow.create_time, RemediationRow.id)
    )
    for row in rows:
        latest[row.node_row_id] = row
    return latest

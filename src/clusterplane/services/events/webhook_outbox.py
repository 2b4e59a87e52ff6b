"""The webhook outbox: new events become deliveries; due deliveries are leased fairly; each
attempt's outcome is recorded. Called by the dispatcher (controllers/webhooks.py) only.

Fan-out: the engine writes an event with `fanout_pending` set, in its own transaction and
nothing more. `fan_out` takes a batch of such events (`FOR UPDATE SKIP LOCKED`: replicas
take different ones), queues one delivery per matching endpoint (enabled, not deleted, of
the event's project or fleet-wide, selecting its kind) and clears the flags, all in one
transaction. A project whose outbox holds `max_pending_per_project` waiting deliveries
gets no more until it drains; each endpoint counts the events it missed (`dropped`).

Claiming: due deliveries are leased (as controllers lease rows) within the bounds of
deliveries in flight, counted from live leases of every replica: per endpoint and per
project, picked round-robin across projects (`domain.webhooks.fair_pick`), so one
project's backlog or hanging receiver never holds another project's deliveries back.

Recording: under the lease token. Success ends the delivery; a failure schedules the next
attempt (`domain.webhooks.retry_delay`), or ends it as `failed` after `max_attempts`.
All times here are wall time.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from clusterplane.db.engine import READ_ONLY
from clusterplane.db.leases import load_guarded, release
from clusterplane.db.rows import EventRow, WebhookDeliveryRow, WebhookEndpointRow
from clusterplane.domain.events import kind_of, matches
from clusterplane.domain.webhooks import (
    MAX_RECORDED_ATTEMPTS,
    AttemptOutcome,
    Candidate,
    DeliveryState,
    fair_pick,
    retry_delay,
)
from clusterplane.services.access.ids import new_prefixed
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.events.event_log import event_document, node_names
from clusterplane.services.events.webhooks import secret_context
from clusterplane.settings import WebhookSettings

D = WebhookDeliveryRow
E = WebhookEndpointRow
PENDING = DeliveryState.PENDING
FAN_OUT_BATCH = 500
JSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
_NEW_EVENTS = select(EventRow.id).where(EventRow.fanout_pending.is_(True)).limit(1)


@dataclass(frozen=True)
class Waiting:
    events: bool  # events not yet fanned out
    deliveries: bool  # deliveries due and not in flight


def work_waiting(engine: Engine, now: datetime) -> Waiting:
    """What there is to do, read without taking a write lock."""
    due = (
        select(D.id).where(D.state == PENDING, D.next_attempt_at <= now, _lease_free(now)).limit(1)
    )
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        events = conn.execute(_NEW_EVENTS).first() is not None
        deliveries = conn.execute(due).first() is not None
        conn.rollback()
    return Waiting(events, deliveries)


def fan_out(session: Session, settings: WebhookSettings, now: datetime) -> int:
    """Queue deliveries for a batch of new events; returns how many events it took."""
    events = list(
        session.scalars(
            select(EventRow)
            .where(EventRow.fanout_pending.is_(True))
            .order_by(EventRow.id)
            .limit(FAN_OUT_BATCH)
            .with_for_update(skip_locked=True)
        )
    )
    if not events:
        return 0
    projects = sorted({e.project_id for e in events if e.project_id is not None})
    endpoints = list(
        session.scalars(
            select(E).where(
                E.deleted_at.is_(None),
                E.enabled.is_(True),
                or_(E.project_id.is_(None), E.project_id.in_(projects)),
            )
        )
    )
    if endpoints:
        _queue(session, events, endpoints, settings, now)
    session.execute(
        update(EventRow)
        .where(EventRow.id.in_([e.id for e in events]))
        .values(fanout_pending=False)
        .execution_options(synchronize_session=False)
    )
    return len(events)


def _queue(
    session: Session,
    events: list[EventRow],
    endpoints: list[WebhookEndpointRow],
    settings: WebhookSettings,
    now: datetime,
) -> None:
    waiting = _waiting_by_project(session, {e.project_id for e in endpoints})
    rows: list[dict[str, object]] = []
    for event in events:
        kind = kind_of(event.object_type, event.kind)
        for endpoint in endpoints:
            mine = endpoint.project_id is None or endpoint.project_id == event.project_id
            if not mine or not matches(endpoint.kinds, kind):
                continue
            key = endpoint.project_id or ""
            if waiting[key] >= settings.max_pending_per_project:
                endpoint.dropped += 1
                continue
            waiting[key] += 1
            rows.append(_delivery(endpoint, event.id, kind, now))
    if rows:
        session.execute(insert(D), rows)


def _waiting_by_project(session: Session, projects: set[str | None]) -> Counter[str]:
    whose = [D.project_id.in_(sorted(p for p in projects if p is not None))]
    if None in projects:
        whose.append(D.project_id.is_(None))
    counts = session.execute(
        select(D.project_id, func.count())
        .where(D.state == PENDING, or_(*whose))
        .group_by(D.project_id)
    )
    return Counter({project or "": count for project, count in counts})


def _delivery(
    endpoint: WebhookEndpointRow, event_id: int, kind: str, now: datetime
) -> dict[str, object]:
    return {
        "id": new_prefixed("whd"),
        "endpoint_id": endpoint.id,
        "project_id": endpoint.project_id,
        "event_id": event_id,
        "kind": kind,
        "state": PENDING,
        "failures": 0,
        "attempts": [],
        "replays": 0,
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
        "next_attempt_at": now,
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
    }


def claim_due(
    session: Session,
    settings: WebhookSettings,
    *,
    now: datetime,
    owner: str,
    want: int,
    lease_seconds: float,
) -> list[tuple[str, str]]:
    """Lease up to `want` due deliveries within the in-flight bounds: (id, token) pairs."""
    if want <= 0:
        return []
    busy_endpoints, busy_projects = _in_flight(session, now)
    chosen = fair_pick(
        _candidates(session, now, settings.max_concurrent_per_endpoint, max(200, 4 * want)),
        want=want,
        busy_endpoints=busy_endpoints,
        busy_projects=busy_projects,
        per_endpoint=settings.max_concurrent_per_endpoint,
        per_project=settings.max_concurrent_per_project,
    )
    if not chosen:
        return []
    token = uuid.uuid4().hex
    leased = session.scalars(
        update(D)
        .where(D.id.in_(chosen), D.state == PENDING, _lease_free(now))
        .values(
            lease_owner=owner,
            lease_token=token,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(D.id)
        .execution_options(synchronize_session=False)
    )
    got = set(leased)
    return [(delivery_id, token) for delivery_id in chosen if delivery_id in got]


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(D.lease_expires_at.is_(None), D.lease_expires_at < now)


def _in_flight(session: Session, now: datetime) -> tuple[Counter[str], Counter[str]]:
    rows = session.execute(
        select(D.endpoint_id, D.project_id, func.count())
        .where(D.lease_expires_at > now)
        .group_by(D.endpoint_id, D.project_id)
    )
    endpoints: Counter[str] = Counter()
    projects: Counter[str] = Counter()
    for endpoint_id, project_id, count in rows:
        endpoints[endpoint_id] += count
        projects[project_id or ""] += count
    return endpoints, projects


def _candidates(session: Session, now: datetime, per_endpoint: int, window: int) -> list[Candidate]:
    """Due deliveries of live endpoints, the first `per_endpoint` of each, in due order."""
    rank = func.row_number().over(partition_by=D.endpoint_id, order_by=(D.next_attempt_at, D.id))
    due = (
        select(D.id, D.endpoint_id, D.project_id, D.next_attempt_at, rank.label("rank"))
        .join(E, E.id == D.endpoint_id)
        .where(
            D.state == PENDING,
            D.next_attempt_at <= now,
            _lease_free(now),
            E.enabled.is_(True),
            E.deleted_at.is_(None),
        )
        .subquery()
    )
    rows = session.execute(
        select(due.c.id, due.c.endpoint_id, due.c.project_id)
        .where(due.c.rank <= per_endpoint)
        .order_by(due.c.next_attempt_at, due.c.id)
        .limit(window)
    )
    return [Candidate(i, endpoint, project or "") for i, endpoint, project in rows]


@dataclass(frozen=True)
class Outgoing:
    """One attempt to make: where, what, and the secret to sign it with."""

    delivery_id: str
    url: str
    kind: str
    event_id: int
    body: bytes
    secret: str


def load_outgoing(
    session: Session, delivery_id: str, token: str, box: SecretBox
) -> Outgoing | None:
    """What to send for a leased delivery; None when it is no longer ours or its endpoint
    is gone or disabled. A secret no configured key opens raises `SealError`."""
    row = session.get(D, delivery_id)
    if row is None or row.lease_token != token or row.state != PENDING:
        return None
    endpoint = session.get(E, row.endpoint_id)
    event = session.get(EventRow, row.event_id)
    if endpoint is None or event is None or endpoint.deleted_at is not None or not endpoint.enabled:
        return None
    names = node_names(session, [event.node_row_id] if event.node_row_id else [])
    document = event_document(event, names.get(event.node_row_id or ""))
    return Outgoing(
        delivery_id=row.id,
        url=endpoint.url,
        kind=row.kind,
        event_id=event.id,
        body=orjson.dumps(document, option=JSON_OPTIONS),
        secret=box.open(endpoint.secret, context=secret_context(endpoint.id)),
    )


def record_attempt(
    session: Session,
    delivery_id: str,
    token: str,
    outcome: AttemptOutcome,
    *,
    settings: WebhookSettings,
    now: datetime,
    jitter: float,
) -> None:
    """Keep the attempt and decide what follows: done, the next attempt, or failed."""
    row = load_guarded(session, D, delivery_id, token)
    if row is None:
        return
    row.attempts = [*row.attempts, outcome.record(now)][-MAX_RECORDED_ATTEMPTS:]
    row.updated_at = now
    release(row)
    if row.state != PENDING:
        return  # cancelled while the attempt was in flight
    if outcome.succeeded:
        _finish(row, DeliveryState.SUCCEEDED, now)
        return
    row.failures += 1
    if row.failures >= settings.max_attempts:
        _finish(row, DeliveryState.FAILED, now)
        return
    delay = retry_delay(
        row.failures,
        base=settings.retry_base_seconds,
        cap=settings.retry_max_seconds,
        jitter=jitter,
    )
    row.next_attempt_at = now + timedelta(seconds=delay)


def _finish(row: WebhookDeliveryRow, state: DeliveryState, now: datetime) -> None:
    row.state = state
    row.finished_at = now
    row.next_attempt_at = None


def release_unsent(session: Session, delivery_id: str, token: str) -> None:
    """Give back a lease taken for nothing (the endpoint went away or was disabled)."""
    row = load_guarded(session, D, delivery_id, token)
    if row is not None:
        release(row)


def prune(session: Session, *, now: datetime, retention_seconds: float, batch: int = 1000) -> int:
    """Delete deliveries finished longer than the retention ago; returns how many."""
    cutoff = now - timedelta(seconds=retention_seconds)
    old = select(D.id).where(D.finished_at < cutoff).limit(batch)
    ids = list(session.scalars(old))
    if ids:
        session.execute(delete(D).where(D.id.in_(ids)).execution_options(synchronize_session=False))
    return len(ids)

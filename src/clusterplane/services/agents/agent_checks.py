"""Active checks on agent hosts: asked for by run id, handed to the agent, reported back.

    request_check(session, host_id, run_id, kind, level, now=...) -> AgentCheckRow   ensure
    find_check(session, host_id, run_id) -> CheckRun | None
    open_requests(session, host_id) -> list[CheckRequest]    what the next status answer asks
    recent(session, host_id) -> list[dict]                     the operator's view
    record_report(session, host_id, report, now=...) -> bool  False: already reported

The host driver (`providers.agent`) requests a check through the port
(`services.agents.host_assignments.AssignmentPort`); the agent learns of it in the answer to its
next status report, runs it and posts a `CheckReport`, which finishes the row once (a
repeat changes nothing). The caller judges the figures (`domain.checks.judge`).

Bounds: a host has at most `MAX_OPEN_PER_HOST` checks waiting for their report (past
that a request is "not yet": `TemporaryProviderError`), and keeps only its
`KEEP_FINISHED_PER_HOST` most recent finished ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import AgentCheckRow, AgentHostRow
from clusterplane.domain.agent_protocol import CheckReport, CheckRequest
from clusterplane.domain.checks import CheckKind
from clusterplane.errors import InvalidRequest, NotFound, TemporaryProviderError
from clusterplane.providers.agent_port import CheckRun

REQUESTED = "requested"
DONE = "done"
FAILED = "failed"
MAX_OPEN_PER_HOST = 16
KEEP_FINISHED_PER_HOST = 64
RETRY_SECONDS = 30.0


def _run(row: AgentCheckRow) -> CheckRun:
    return CheckRun(
        run_id=row.run_id,
        kind=row.kind,
        level=row.level,
        state=row.state,
        requested_at=row.requested_at,
        figures=dict(row.figures or {}),
        message=row.message,
    )


def request_check(
    session: Session, host_id: str, run_id: str, kind: str, level: int | None, *, now: datetime
) -> CheckRun:
    """The check `run_id` on the host, asked for now unless it was already."""
    if session.get(AgentHostRow, host_id) is None:
        raise NotFound(f"no agent host '{host_id}'", param="host")
    CheckKind(kind)  # a kind nobody can judge is a bug of the caller
    row = session.get(AgentCheckRow, (host_id, run_id))
    if row is not None:
        return _run(row)
    waiting = session.scalar(
        select(func.count())
        .select_from(AgentCheckRow)
        .where(AgentCheckRow.host_id == host_id, AgentCheckRow.state == REQUESTED)
    )
    if (waiting or 0) >= MAX_OPEN_PER_HOST:
        raise TemporaryProviderError(
            f"host {host_id} already has {waiting} checks waiting for its agent",
            delay_seconds=RETRY_SECONDS,
        )
    row = AgentCheckRow(
        host_id=host_id,
        run_id=run_id,
        kind=kind,
        level=level,
        state=REQUESTED,
        figures=None,
        message="",
        requested_at=now,
        finished_at=None,
    )
    session.add(row)
    _prune(session, host_id)
    session.flush()
    return _run(row)


def _prune(session: Session, host_id: str) -> None:
    """Drop the host's finished checks past the most recent `KEEP_FINISHED_PER_HOST`."""
    finished = (
        select(AgentCheckRow.run_id)
        .where(AgentCheckRow.host_id == host_id, AgentCheckRow.state != REQUESTED)
        .order_by(AgentCheckRow.finished_at.desc(), AgentCheckRow.run_id)
        .offset(KEEP_FINISHED_PER_HOST)
    )
    old = list(session.scalars(finished))
    if old:
        session.execute(
            delete(AgentCheckRow).where(
                AgentCheckRow.host_id == host_id, AgentCheckRow.run_id.in_(old)
            )
        )


def find_check(session: Session, host_id: str, run_id: str) -> CheckRun | None:
    row = session.get(AgentCheckRow, (host_id, run_id))
    return _run(row) if row is not None else None


def open_requests(session: Session, host_id: str) -> list[CheckRequest]:
    """The host's checks not yet reported, oldest first."""
    rows = session.scalars(
        select(AgentCheckRow)
        .where(AgentCheckRow.host_id == host_id, AgentCheckRow.state == REQUESTED)
        .order_by(AgentCheckRow.requested_at, AgentCheckRow.run_id)
        .limit(MAX_OPEN_PER_HOST)
    )
    return [CheckRequest(run_id=r.run_id, kind=r.kind, level=r.level) for r in rows]


def recent(session: Session, host_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The host's latest checks, newest first, as the admin agent view shows them."""
    rows = session.scalars(
        select(AgentCheckRow)
        .where(AgentCheckRow.host_id == host_id)
        .order_by(AgentCheckRow.requested_at.desc(), AgentCheckRow.run_id)
        .limit(limit)
    )
    return [
        {
            "run_id": r.run_id,
            "kind": r.kind,
            "level": r.level,
            "state": r.state,
            "message": r.message,
            "figures": r.figures,
            "requested_at": r.requested_at,
            "finished_at": r.finished_at,
        }
        for r in rows
    ]


def record_report(session: Session, host_id: str, report: CheckReport, *, now: datetime) -> bool:
    """Finish the run with the agent's report; False when it was finished already."""
    row = session.get(AgentCheckRow, (host_id, report.run_id), with_for_update=True)
    if row is None:
        raise NotFound(f"this host was asked for no check '{report.run_id}'", param="run_id")
    if row.state != REQUESTED:
        return False
    if not report.ok and not report.message:
        raise InvalidRequest("a failed check needs a message saying why", param="message")
    row.state = DONE if report.ok else FAILED
    row.figures = report.figures
    row.message = report.message
    row.finished_at = now
    return True

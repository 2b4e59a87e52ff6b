"""`/agent/v1/...`: what node agents call. No API keys: join tokens and signed requests.

* POST `/agent/v1/enroll` (join token in the body): create the host, bind the agent's key.
* GET `/agent/v1/hosts/{host_id}/assignment?after_generation=N`: the host's desired state,
  answered as soon as its generation passes N, else after the long-poll wait.
* POST `/agent/v1/hosts/{host_id}/status`: the heartbeat and what the agent applied;
  answered with the active checks the host is asked to run (`StatusAnswer`).
* POST `/agent/v1/hosts/{host_id}/check-reports`: what running one of them found
  (`services.agents.agent_checks`: each run finishes once; a repeat answers `duplicate`).
* POST `/agent/v1/hosts/{host_id}/health-events`: passive signals (kernel log, NVML),
  ingested as the operator's health API does, each once by its key (a re-sent key
  answers the event it became: `services.agents.agent_health`).

Every call but enrollment is signed (`services.agents.agent_auth`); a host's credential reaches
its own host's records only (403 otherwise). Bodies are read here, size-limited, since the
signature covers their bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from clusterplane.api import presenters
from clusterplane.api.deps import api_state
from clusterplane.api.openapi import request_body
from clusterplane.api.routers.health import event_view
from clusterplane.api.schemas import format_validation_error
from clusterplane.api.state import ApiState
from clusterplane.clock import Clock
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import AgentHostRow, HostRow
from clusterplane.domain import agent_protocol as wire
from clusterplane.domain.health import EventKind
from clusterplane.errors import InvalidRequest, PayloadTooLarge
from clusterplane.services.agents import (
    agent_auth,
    agent_checks,
    agent_health,
    agent_hosts,
    agent_signals,
    host_assignments,
)
from clusterplane.services.health import health, health_reports
from clusterplane.settings import Settings

router = APIRouter(prefix="/agent/v1", tags=["agents"])


async def _body(request: Request) -> bytes:
    limit = api_state(request).settings.server.max_body_bytes
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate(orjson.loads(raw or b"{}"))
    except orjson.JSONDecodeError:
        raise InvalidRequest("request body is not valid JSON") from None
    except ValidationError as exc:
        message, param = format_validation_error(exc)
        raise InvalidRequest(message, param=param) from None


@dataclass(frozen=True)
class SignedCall:
    host_id: str
    host_name: str
    body: bytes


def _verify(state: ApiState, signed: agent_auth.SignedRequest) -> tuple[str, str]:
    """(host id, host name) of a proven agent; its call counts as a sign of life."""
    with transaction(state.sessions) as session:
        agent = agent_auth.authenticate(
            session, state.settings.agents, signed, now=state.wall_clock.now()
        )
        agent_hosts.mark_heard(session, agent, now=state.clock.now())
        host = session.get(HostRow, agent.host_id)
        assert host is not None
        return host.id, host.name


async def signed_agent(request: Request) -> SignedCall:
    body = await _body(request)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    headers = request.headers
    signed = agent_auth.SignedRequest(
        method=request.method,
        path=path,
        host_id=headers.get(wire.HOST_HEADER),
        timestamp=headers.get(wire.TIMESTAMP_HEADER),
        nonce=headers.get(wire.NONCE_HEADER),
        signature=headers.get(wire.SIGNATURE_HEADER),
        body=body,
    )
    state = api_state(request)
    host_id, host_name = await run_in_threadpool(_verify, state, signed)
    agent_auth.require_own_host(host_id, request.path_params.get("host_id", ""))
    state.agent_inflight.admit_key(request, host_id, "this host")
    return SignedCall(host_id, host_name, body)


@router.post("/enroll", openapi_extra=request_body(wire.Enrollment))
async def enroll(request: Request) -> Response:
    state = api_state(request)
    enrollment = _parse(wire.Enrollment, await _body(request))

    def write() -> dict[str, Any]:
        with transaction(state.sessions) as session:
            host = agent_hosts.enroll(
                session, enrollment, wall=state.wall_clock.now(), now=state.clock.now()
            )
            return {
                "host_id": host.id,
                "host_name": host.name,
                "region": host.region,
                "fabric": host.fabric,
                "block": host.block,
                "rack": host.rack,
            }

    answer = await run_in_threadpool(write)
    state.nudge()
    return presenters.json_response(answer, status=201)


@router.get("/hosts/{host_id}/assignment")
async def assignment(
    host_id: str,
    request: Request,
    after_generation: int = Query(-1, ge=-1),
    call: SignedCall = Depends(signed_agent),
) -> Response:
    state = api_state(request)
    polls = state.long_polls
    headers: dict[str, str] = {}
    current = await run_in_threadpool(_generation, state, host_id)
    if current <= after_generation:
        if polls.try_enter():
            try:
                await polls.wait_past(
                    host_id, after_generation, seconds=state.settings.agents.long_poll_seconds
                )
            finally:
                polls.leave()
        else:
            headers["retry-after"] = "5"
    doc = await run_in_threadpool(_assignment, state, host_id)
    response = presenters.json_response(doc)
    response.headers.update(headers)
    return response


def _generation(state: ApiState, host_id: str) -> int:
    with read_transaction(state.sessions) as session:
        return host_assignments.generation(session, host_id)


def _assignment(state: ApiState, host_id: str) -> dict[str, Any]:
    with read_transaction(state.sessions) as session:
        return host_assignments.current(session, state.secrets, host_id).model_dump(mode="json")


@router.post("/hosts/{host_id}/status", openapi_extra=request_body(wire.StatusReport))
async def status(
    host_id: str, request: Request, call: SignedCall = Depends(signed_agent)
) -> Response:
    state = api_state(request)
    report = _parse(wire.StatusReport, call.body)

    def write() -> list[wire.CheckRequest]:
        with transaction(state.sessions) as session:
            agent = session.get(AgentHostRow, host_id)
            assert agent is not None
            previous, now = agent.report, state.clock.now()
            agent_hosts.record_status(session, agent, report, now=now)
            agent_signals.judge_daemons(session, state.settings, agent, previous, now=now)
            return agent_checks.open_requests(session, host_id)

    checks = await run_in_threadpool(write)
    answer = wire.StatusAnswer(host_id=host_id, checks=checks)
    return presenters.json_response(answer.model_dump(mode="json"))


@router.post("/hosts/{host_id}/check-reports", openapi_extra=request_body(wire.CheckReport))
async def check_report(
    host_id: str, request: Request, call: SignedCall = Depends(signed_agent)
) -> Response:
    state = api_state(request)
    report = _parse(wire.CheckReport, call.body)

    def write() -> bool:
        with transaction(state.sessions) as session:
            return agent_checks.record_report(session, host_id, report, now=state.clock.now())

    recorded = await run_in_threadpool(write)
    if recorded:
        state.nudge()
    return presenters.json_response({"run_id": report.run_id, "duplicate": not recorded})


@router.post("/hosts/{host_id}/health-events", openapi_extra=request_body(wire.HealthEventBatch))
async def health_events(
    host_id: str, request: Request, call: SignedCall = Depends(signed_agent)
) -> Response:
    state = api_state(request)
    batch = _parse(wire.HealthEventBatch, call.body)
    signals = [_signal(event) for event in batch.events]  # a bad batch writes nothing
    reports = [
        agent_health.AgentReport(
            host_id=call.host_id,
            key=event.key,
            report=health_reports.Report(host_name=call.host_name, instance_id=None, signal=signal),
        )
        for event, signal in zip(batch.events, signals, strict=True)
    ]
    # Submitted together, so they share one group commit (in this order).
    outcomes = await asyncio.gather(*(state.agent_health.submit(r) for r in reports))
    state.nudge()
    results = [
        {"key": event.key, **outcome} for event, outcome in zip(batch.events, outcomes, strict=True)
    ]
    return presenters.json_response({"results": results})


def report_writer(
    settings: Settings, clock: Clock
) -> Callable[[Session, Sequence[agent_health.AgentReport]], list[dict[str, Any] | Exception]]:
    """What the agent API's group commit does with a batch of signals: ingest once, view."""

    def write(
        session: Session, items: Sequence[agent_health.AgentReport]
    ) -> list[dict[str, Any] | Exception]:
        outcomes = agent_health.ingest_agent_reports(session, settings, items, clock.now())
        return [_outcome_view(o) for o in outcomes]

    return write


def _outcome_view(outcome: agent_health.Outcome) -> dict[str, Any] | Exception:
    if isinstance(outcome, Exception):
        return outcome
    if isinstance(outcome, agent_health.Duplicate):
        return {"duplicate": True, "event_id": outcome.event_id}
    return {"duplicate": False, "event_id": outcome.id, "event": event_view(outcome)}


def _signal(event: wire.AgentHealthEvent) -> health.Signal:
    signal = health.Signal(
        kind=_kind(event.kind),
        code=event.xid_code,
        gpu_index=event.gpu_index,
        message=event.message,
        observed_at=event.observed_at,
        source="agent",
    )
    health.check_signal(signal)
    return signal


def _kind(value: str) -> EventKind:
    if value in (EventKind.HEARTBEAT_LOSS, EventKind.ACTIVE_CHECK, EventKind.SCHEDULER_NODE_DOWN):
        raise InvalidRequest(f"an agent does not report '{value}' events", param="kind")
    try:
        return EventKind(value)
    except ValueError:
        raise InvalidRequest(f"unknown event kind '{value}'", param="kind") from None

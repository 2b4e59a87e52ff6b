"""`/admin/v1/health/...`: the operator's and node agents' health API (admin keys only).

* POST `/health/events`: ingest a passive signal from a host (XID, ECC, row remap, NVLink,
  thermal, PCIe, fallen off the bus, IB link flap, heartbeat loss); the answer says how it
  was classified, whether the node was excluded, and the remediation it caused or why none.
* POST `/health/events/{id}/resolve`: the signal cleared. GET `/health/events`: query.
* POST `/health/checks`: run an active check on demand; GET `/health/checks[/{id}]`.
* PUT `/clusters/{id}/remediation-policy`, `/projects/{id}/remediation-policy`: auto-approve.
* GET `/clusters/{id}/health`: the cluster's node health and whether repair is stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, current_caller, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.schemas.common import FreeText, Identifier
from clusterplane.clock import Clock
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import (
    ClusterRow,
    HealthCheckRunRow,
    HealthEventRow,
    NodeRow,
    ProjectRow,
    RemediationRow,
)
from clusterplane.domain import rails
from clusterplane.domain.checks import CheckKind, CheckPurpose
from clusterplane.domain.enums import NodeRole
from clusterplane.domain.health import EventKind
from clusterplane.errors import InvalidRequest, NotFound
from clusterplane.services.access.auth import Caller, require_admin
from clusterplane.services.health import check_runs, health, health_reports, recovery
from clusterplane.settings import Settings


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestEvent(_Body):
    host_name: Identifier | None = None
    instance_id: Identifier | None = None
    kind: EventKind
    xid_code: StrictInt | None = Field(default=None, ge=0, le=1000)
    gpu_index: StrictInt | None = Field(default=None, ge=0, le=63)
    message: FreeText = ""
    observed_at: datetime | None = None


class StartCheck(_Body):
    host_name: Identifier | None = None
    instance_id: Identifier | None = None
    check: CheckKind
    level: StrictInt | None = Field(default=None, ge=1, le=4)


class Policy(_Body):
    auto_approve: StrictBool


async def admin(caller: Caller = Depends(current_caller)) -> Caller:
    require_admin(caller)
    return caller


router = APIRouter(prefix="/admin/v1", tags=["health"], dependencies=[Depends(admin)])


def event_view(event: HealthEventRow) -> dict[str, Any]:
    return {
        "id": event.id,
        "host_name": event.host_name,
        "cluster_id": event.cluster_id,
        "instance_id": event.instance_id,
        "kind": event.kind,
        "xid_code": event.code,
        "gpu_index": event.gpu_index,
        "alert_name": event.alert_name,
        "severity": event.severity,
        "action": event.action,
        "title": event.title,
        "message": event.message,
        "source": event.source,
        "check_run_id": event.check_run_id,
        "observed_at": event.observed_at,
        "ingested_at": event.ingested_at,
        "resolved_at": event.resolved_at,
        "remediation_id": event.remediation_id,
        "held_reason": event.held_reason,
    }


def run_view(run: HealthCheckRunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "host_name": run.host_name,
        "cluster_id": run.cluster_id,
        "check": run.check,
        "level": run.level,
        "purpose": run.purpose,
        "state": run.state,
        "result": run.result,
        "message": run.message,
        "remediation_id": run.remediation_id,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def _node_view(node: NodeRow) -> dict[str, Any]:
    return {
        "instance_id": node.instance_id,
        "node_name": node.node_name,
        "host_name": node.host_name,
        "health": node.health,
        "cordoned_by": node.cordoned_by,
        "status": node.status,
    }


@router.post("/health/events", openapi_extra=request_body(IngestEvent))
async def ingest_event(request: Request, body: RawBody = Depends(raw_body)) -> Response:
    """Answered once the event (and the exclusion and repair it caused) has committed.

    Reports arriving together are written together (`api_state(...).health_reports`, a
    group commit), each answered with its own event or its own error.
    """
    req = validate(IngestEvent, body)
    state = api_state(request)
    signal = health.Signal(
        kind=req.kind,
        code=req.xid_code,
        gpu_index=req.gpu_index,
        message=req.message,
        observed_at=req.observed_at,
    )
    result = await state.health_reports.submit(
        health_reports.Report(host_name=req.host_name, instance_id=req.instance_id, signal=signal)
    )
    state.nudge()
    return presenters.json_response(result)


def report_writer(
    settings: Settings, clock: Clock
) -> Callable[[Session, Sequence[health_reports.Report]], list[dict[str, Any] | Exception]]:
    """What the health API's group commit does with a batch of reports: ingest, and view."""

    def write(
        session: Session, reports: Sequence[health_reports.Report]
    ) -> list[dict[str, Any] | Exception]:
        outcomes = health_reports.ingest_reports(session, settings, reports, clock.now())
        return [o if isinstance(o, Exception) else event_view(o) for o in outcomes]

    return write


@router.post("/health/events/{event_id}/resolve")
def resolve_event(event_id: str, request: Request) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        event = session.get(HealthEventRow, event_id)
        if event is None:
            raise NotFound(f"health event '{event_id}' not found", param="event_id")
        recovery.resolve_events(session, [event], state.clock.now(), why="reported cleared")
        result = event_view(event)
    state.nudge()
    return presenters.json_response(result)


@router.get("/health/events")
def list_events(request: Request) -> Response:
    params = request.query_params
    query = select(HealthEventRow)
    if params.get("cluster_id"):
        query = query.where(HealthEventRow.cluster_id == params["cluster_id"])
    if params.get("host_name"):
        query = query.where(HealthEventRow.host_name == params["host_name"])
    if params.get("open") == "true":
        query = query.where(HealthEventRow.resolved_at.is_(None))
    with read_transaction(api_state(request).sessions) as session:
        rows = session.scalars(
            query.order_by(HealthEventRow.ingested_at.desc(), HealthEventRow.id).limit(1000)
        )
        events = [event_view(e) for e in rows]
    return presenters.json_response({"events": events})


@router.get("/health/events/{event_id}")
def get_event(event_id: str, request: Request) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        event = session.get(HealthEventRow, event_id)
        if event is None:
            raise NotFound(f"health event '{event_id}' not found", param="event_id")
        return presenters.json_response(event_view(event))


@router.post("/health/checks", openapi_extra=request_body(StartCheck))
def start_check(request: Request, body: RawBody = Depends(raw_body)) -> Response:
    req = validate(StartCheck, body)
    if req.level is not None and req.check != CheckKind.DCGM_DIAG:
        raise InvalidRequest("only dcgm_diag takes a level", param="level")
    state = api_state(request)
    with transaction(state.sessions) as session:
        host = health.find_host(session, host_name=req.host_name, instance_id=req.instance_id)
        run = check_runs.start_check(
            session,
            state.settings,
            host,
            kind=req.check,
            level=req.level,
            purpose=CheckPurpose.ON_DEMAND,
            now=state.clock.now(),
        )
        result = run_view(run)
    state.nudge()
    return presenters.json_response(result)


@router.get("/health/checks")
def list_checks(request: Request) -> Response:
    params = request.query_params
    with read_transaction(api_state(request).sessions) as session:
        host_id = None
        if params.get("host_name"):
            host = health.find_host(session, host_name=params["host_name"], instance_id=None)
            host_id = host.id
        runs = check_runs.list_runs(session, host_id=host_id, cluster_id=params.get("cluster_id"))
        return presenters.json_response({"checks": [run_view(r) for r in runs]})


@router.get("/health/checks/{run_id}")
def get_check(run_id: str, request: Request) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        run = session.get(HealthCheckRunRow, run_id)
        if run is None:
            raise NotFound(f"health check run '{run_id}' not found", param="run_id")
        return presenters.json_response(run_view(run))


@router.put("/clusters/{cluster_id}/remediation-policy", openapi_extra=request_body(Policy))
def cluster_policy(
    cluster_id: str, request: Request, body: RawBody = Depends(raw_body)
) -> Response:
    req = validate(Policy, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        cluster = session.get(ClusterRow, cluster_id)
        if cluster is None or cluster.deleted_at is not None:
            raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
        cluster.auto_approve_remediations = req.auto_approve
    return presenters.json_response({"cluster_id": cluster_id, "auto_approve": req.auto_approve})


@router.put("/projects/{project_id}/remediation-policy", openapi_extra=request_body(Policy))
def project_policy(
    project_id: str, request: Request, body: RawBody = Depends(raw_body)
) -> Response:
    req = validate(Policy, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        project = session.get(ProjectRow, project_id)
        if project is None:
            raise NotFound(f"project '{project_id}' not found", param="project_id")
        project.auto_approve_remediations = req.auto_approve
    return presenters.json_response({"project_id": project_id, "auto_approve": req.auto_approve})


@router.get("/clusters/{cluster_id}/health")
def cluster_health(cluster_id: str, request: Request) -> Response:
    """Node health, open signals, and whether automatic repair is stopped (and why)."""
    with read_transaction(api_state(request).sessions) as session:
        cluster = session.get(ClusterRow, cluster_id)
        if cluster is None or cluster.deleted_at is not None:
            raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
        nodes = session.scalars(
            select(NodeRow).where(
                NodeRow.cluster_id == cluster_id,
                NodeRow.role == NodeRole.GPU_WORKER,
                NodeRow.deleted_at.is_(None),
            )
        ).all()
        unhealthy, workers = health.worker_health(session, cluster_id)
        share = api_state(request).settings.health.max_unhealthy_share
        stopped = rails.over_stop_rule(unhealthy, workers, share)
        open_remediations = session.scalars(
            select(RemediationRow.id).where(
                RemediationRow.cluster_id == cluster_id,
                RemediationRow.end_time.is_(None),
            )
        ).all()
        body = {
            "cluster_id": cluster_id,
            "status": cluster.status,
            "auto_approve": health.auto_approves(session, cluster),
            "remediation_stopped": stopped,
            "remediation_stopped_reason": (
                rails.stop_rule_message(unhealthy, workers, share) if stopped else None
            ),
            "unhealthy_workers": unhealthy,
            "workers": workers,
            "open_remediations": list(open_remediations),
            "nodes": [_node_view(n) for n in nodes],
        }
    return presenters.json_response(body)

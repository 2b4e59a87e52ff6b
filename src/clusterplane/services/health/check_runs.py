"""Creating and listing active check runs (the runner is `services.health.checks`).

`start_check` starts a run at once (RUNNING; the check-run controller has the host driver
run it) or queues it until `not_before`; `schedule_host_repair` queues the
return-to-service check of a quarantined host after its hardware repair;
`quarantine_idle_host` takes an unallocated host with an unhealthy signal out of the
fleet (unknown or bad state fails closed).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import HealthCheckRunRow, HostRow, NodeRow
from clusterplane.domain.checks import CheckKind, CheckPurpose, CheckState
from clusterplane.domain.enums import HostState
from clusterplane.errors import InvalidRequest
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.capacity import placement_cache
from clusterplane.services.events.events import FLEET, record_event
from clusterplane.settings import Settings


def start_check(
    session: Session,
    settings: Settings,
    host: HostRow,
    *,
    kind: CheckKind,
    level: int | None,
    purpose: CheckPurpose,
    now: datetime,
    node: NodeRow | None = None,
    remediation_id: str | None = None,
    not_before: datetime | None = None,
) -> HealthCheckRunRow:
    if kind == CheckKind.DCGM_DIAG:
        level = level or 2
        if level not in (1, 2, 3, 4):
            raise InvalidRequest("DCGM diagnostic level must be 1 to 4", param="level")
    else:
        level = None
    run = HealthCheckRunRow(
        id=new_uuid(),
        host_id=host.id,
        host_name=host.name,
        cluster_id=node.cluster_id if node else host.cluster_id,
        node_row_id=node.id if node else host.node_row_id,
        check=kind,
        level=level,
        purpose=purpose,
        state=CheckState.QUEUED,
        result=None,
        message="",
        remediation_id=remediation_id,
        created_at=now,
    )
    if not_before is not None and not_before > now:
        run.next_reconcile_at = not_before
    else:
        run_now(run, now)
    session.add(run)
    return run


def run_now(run: HealthCheckRunRow, now: datetime) -> None:
    """The run starts: the check-run controller asks the host driver at once."""
    run.state = CheckState.RUNNING
    run.started_at = now
    run.driver_state = None
    run.next_reconcile_at = now


def schedule_host_repair(
    session: Session, settings: Settings, host: HostRow, now: datetime
) -> HealthCheckRunRow:
    """A quarantined host goes for hardware repair; it returns only after passing a check."""
    return start_check(
        session,
        settings,
        host,
        kind=CheckKind.DCGM_DIAG,
        level=3,
        purpose=CheckPurpose.RETURN_TO_SERVICE,
        now=now,
        not_before=now + timedelta(seconds=settings.health.host_repair_seconds),
    )


def list_runs(
    session: Session, *, host_id: str | None = None, cluster_id: str | None = None, limit: int = 100
) -> list[HealthCheckRunRow]:
    query = select(HealthCheckRunRow)
    if host_id is not None:
        query = query.where(HealthCheckRunRow.host_id == host_id)
    if cluster_id is not None:
        query = query.where(HealthCheckRunRow.cluster_id == cluster_id)
    return list(
        session.scalars(
            query.order_by(HealthCheckRunRow.created_at.desc(), HealthCheckRunRow.id).limit(limit)
        )
    )


def quarantine_idle_host(
    session: Session, settings: Settings, host: HostRow, why: str, now: datetime
) -> None:
    """An available host with a bad signal leaves the fleet until repaired and checked."""
    if host.state != HostState.AVAILABLE or host.cluster_id is not None:
        return
    host.state = HostState.QUARANTINED
    host.updated_at = now
    placement_cache.invalidate(session, (host.region, host.gpu_type))
    record_event(
        session,
        object_type="host",
        object_id=host.id,
        kind="quarantined",
        message=why,
        at=now,
        scope=FLEET,
    )
    schedule_host_repair(session, settings, host, now)


def ensure_idle_schedule(session: Session, settings: Settings, now: datetime) -> int:
    """Give every host a queued scheduled check when idle checks are on; returns how many.

    Hosts that already have an unfinished scheduled run keep it. The runs start spread over
    one interval so the fleet is not checked all at once.
    """
    interval = settings.health.idle_check_interval_seconds
    if interval <= 0:
        return 0
    queued = set(
        session.scalars(
            select(HealthCheckRunRow.host_id).where(
                HealthCheckRunRow.purpose == CheckPurpose.SCHEDULED,
                HealthCheckRunRow.state.in_([CheckState.QUEUED, CheckState.RUNNING]),
            )
        )
    )
    hosts = [
        h for h in session.scalars(select(HostRow).order_by(HostRow.name)) if h.id not in queued
    ]
    for index, host in enumerate(hosts):
        offset = timedelta(seconds=interval * index / max(1, len(hosts)))
        queue_idle_check(session, settings, host, now + offset, now)
    return len(hosts)


def queue_idle_check(
    session: Session, settings: Settings, host: HostRow, at: datetime, now: datetime
) -> HealthCheckRunRow:
    """The next scheduled DCGM check of a host; it runs only if the host is idle then."""
    return start_check(
        session,
        settings,
        host,
        kind=CheckKind.DCGM_DIAG,
        level=2,
        purpose=CheckPurpose.SCHEDULED,
        now=now,
        not_before=max(at, now + timedelta(seconds=1)),
    )

"""Active health checks: start a run on a host, finish it with its evidence, act on it.

A run is QUEUED (a returning host waits out its hardware repair), RUNNING while its host
driver runs it (the check-run controller starts and polls it through the driver's check
feature and hands the progress here), then PASSED or FAILED with the measured figures
(`result`) and a message; a driver that cannot run it fails it with its own message.
What a result does depends on why the check ran:
* on demand, scheduled, acceptance: a failure on a serving node is a health signal
  (kind `active_check`, linked to the run), so it is excluded and a repair proposed;
* verification: the remediation waiting on it is looked at again at once;
* return to service: a pass hands the quarantined host back to the fleet (and clears its
  signals); a failure sends it back for another repair.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from clusterplane.db.rows import HealthCheckRunRow, HostRow, RemediationRow
from clusterplane.domain.checks import CheckKind, CheckPurpose, CheckState, judge
from clusterplane.domain.enums import HostState
from clusterplane.domain.health import EventKind
from clusterplane.providers.models import CheckProgress
from clusterplane.services.capacity import placement_cache
from clusterplane.services.events.events import FLEET, record_event, scope_in
from clusterplane.services.health import check_runs, health, recovery
from clusterplane.settings import Settings


def advance_check(
    session: Session,
    settings: Settings,
    run: HealthCheckRunRow,
    progress: CheckProgress | None,
    now: datetime,
) -> None:
    """Start a queued run when its time comes; record the driver's `progress` on a
    running one (None: nothing new), and finish it once the driver is done."""
    if run.state == CheckState.QUEUED:
        if run.purpose == CheckPurpose.SCHEDULED and not _idle(session, run.host_id):
            _skip_busy_host(session, settings, run, now)
            return
        check_runs.run_now(run, now)
        return
    if run.state != CheckState.RUNNING:
        run.next_reconcile_at = None
        return
    if progress is None:
        return
    if not progress.done and not progress.failed:
        run.driver_state = progress.state
        run.next_reconcile_at = now + timedelta(seconds=max(0.0, progress.poll_after_seconds))
        return
    host = session.get(HostRow, run.host_id)
    if host is None or progress.failed:
        run.driver_state = progress.state or run.driver_state
        _finish(session, run, CheckState.FAILED, progress.message or "host gone", now)
        if host is not None:
            _act_on_result(session, settings, run, host, now)
        return
    verdict = judge(CheckKind(run.check), host.gpu_type, host.ib_hca_type, progress.figures)
    run.result = progress.figures
    run.driver_state = progress.state
    state = CheckState.PASSED if verdict.passed else CheckState.FAILED
    _finish(session, run, state, verdict.message, now)
    _act_on_result(session, settings, run, host, now)


def _finish(
    session: Session, run: HealthCheckRunRow, state: CheckState, message: str, now: datetime
) -> None:
    run.message = message
    run.state = state
    run.finished_at = now
    run.next_reconcile_at = None
    record_event(
        session,
        object_type="health_check_run",
        object_id=run.id,
        kind=run.state.lower(),
        message=f"{run.check} on {run.host_name}: {message}",
        at=now,
        scope=scope_in(session, run.cluster_id, run.node_row_id),
    )


def _idle(session: Session, host_id: str) -> bool:
    host = session.get(HostRow, host_id)
    return host is not None and host.state == HostState.AVAILABLE and host.cluster_id is None


def _skip_busy_host(
    session: Session, settings: Settings, run: HealthCheckRunRow, now: datetime
) -> None:
    """A scheduled check never disturbs a serving host: it is skipped, the next queued."""
    run.state = CheckState.PASSED
    run.message = "skipped: the host was not idle"
    run.finished_at = now
    run.next_reconcile_at = None
    _queue_next(session, settings, run, now)


def _queue_next(
    session: Session, settings: Settings, run: HealthCheckRunRow, now: datetime
) -> None:
    interval = settings.health.idle_check_interval_seconds
    host = session.get(HostRow, run.host_id)
    if interval > 0 and host is not None:
        check_runs.queue_idle_check(session, settings, host, now + timedelta(seconds=interval), now)


def _act_on_result(
    session: Session, settings: Settings, run: HealthCheckRunRow, host: HostRow, now: datetime
) -> None:
    purpose = CheckPurpose(run.purpose)
    passed = run.state == CheckState.PASSED
    if purpose == CheckPurpose.SCHEDULED:
        _queue_next(session, settings, run, now)
    if purpose == CheckPurpose.VERIFICATION:
        remediation = session.get(RemediationRow, run.remediation_id or "")
        if remediation is not None:
            remediation.next_reconcile_at = now
        if passed:
            return
    if purpose == CheckPurpose.RETURN_TO_SERVICE:
        if host.state != HostState.QUARANTINED:
            return
        if passed:
            host.state = HostState.AVAILABLE if host.in_fleet_file else HostState.OFFLINE
            host.updated_at = now
            placement_cache.invalidate(session, (host.region, host.gpu_type))
            recovery.resolve_events(
                session, recovery.open_events_of_host(session, host.id), now, why="host repaired"
            )
            record_event(
                session,
                object_type="host",
                object_id=host.id,
                kind="returned",
                message=f"repaired and passed {run.check}; back in the fleet",
                at=now,
                scope=FLEET,
            )
        else:
            check_runs.schedule_host_repair(session, settings, host, now)
        return
    if passed:
        return
    if host.node_row_id is not None and host.node_row_id == run.node_row_id:
        health.ingest_event(
            session,
            settings,
            host,
            health.Signal(
                kind=EventKind.ACTIVE_CHECK,
                message=run.message,
                source="active_check",
                check_run_id=run.id,
            ),
            now,
        )
    elif host.cluster_id is None:
        why = f"{run.check} failed on an idle host: {run.message}"
        check_runs.quarantine_idle_host(session, settings, host, why, now)

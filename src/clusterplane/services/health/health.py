"""Passive health: ingest signals, hold unhealthy nodes out, and propose their repair.

`ingest_event` stores one signal (classified by `domain.health`), joins it to the node
the host serves, cordons that node when the verdict says it is unhealthy, and in the
same transaction either links the signal to the node's open remediation (escalating a
pending proposal's mode in place) or creates an automated one (PENDING_APPROVAL, or
PENDING "Auto-Approved" under a fully automatic policy) with the event as evidence.
When a rail holds it back (`domain.rails`: opt-out, cooldown, stop rule), the event says
why and is looked at again by the health-event controller (`evaluate_event`).
Clearing signals (auto-resolve, healing) is `services.health.recovery`.

What a decision reads about the node (remediation history, its cluster's worker health)
comes from `services.health.health_facts`: read for the one node here, or for a whole batch of
reports at once by `services.health.health_reports`, which then calls `ingest_event` per report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import (
    ClusterRow,
    HealthEventRow,
    HostRow,
    NodeRow,
    ProjectRow,
    RemediationRow,
)
from clusterplane.domain import health, rails
from clusterplane.domain.enums import (
    ClusterPhase,
    NodeRole,
    RemediationMode,
    RemediationState,
)
from clusterplane.domain.lifecycle import STEADY_PHASES
from clusterplane.errors import ClusterplaneError, InvalidRequest, NotFound
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.events.events import (
    cluster_scope,
    record_event,
    refresh_node_status,
    scope_in,
    set_cluster_phase,
)
from clusterplane.services.health import check_runs
from clusterplane.services.health.health_facts import UNHEALTHY as UNHEALTHY
from clusterplane.services.health.health_facts import NodeFacts, is_unhealthy_worker
from clusterplane.services.health.remediations import recommend
from clusterplane.settings import HealthSettings, Settings

S = RemediationState
CORDONED_BY_US = "clusterplane"
AUTO_APPROVED = "Auto-Approved"
HEALTHY = "healthy"


@dataclass(frozen=True)
class Signal:
    kind: health.EventKind
    code: int | None = None
    gpu_index: int | None = None
    message: str = ""
    source: str = "agent"
    observed_at: datetime | None = None
    check_run_id: str | None = None


HostRef = tuple[str | None, str | None]  # (host name, instance id): the name wins


def find_host(session: Session, *, host_name: str | None, instance_id: str | None) -> HostRow:
    """The host named, or serving the instance; NotFound or InvalidRequest otherwise."""
    [found] = find_hosts(session, [(host_name, instance_id)])
    if isinstance(found, ClusterplaneError):
        raise found
    return found


def find_hosts(session: Session, refs: Sequence[HostRef]) -> list[HostRow | ClusterplaneError]:
    """Each reference's host, or the error that says why there is none: two queries for
    them all."""
    names = {name for name, _ in refs if name is not None}
    instances = {instance for name, instance in refs if name is None and instance is not None}
    host_of_instance: dict[str, str] = {}
    if instances:
        rows = session.execute(
            select(NodeRow.instance_id, NodeRow.host_id).where(
                NodeRow.instance_id.in_(sorted(instances))
            )
        )
        host_of_instance = {instance: host_id for instance, host_id in rows if host_id}
    by_name: dict[str, HostRow] = {}
    by_id: dict[str, HostRow] = {}
    if names or host_of_instance:
        query = select(HostRow).where(
            HostRow.name.in_(sorted(names)) | HostRow.id.in_(sorted(host_of_instance.values()))
        )
        for host in session.scalars(query):
            by_name[host.name] = host
            by_id[host.id] = host
    return [_host_of(ref, by_name, by_id, host_of_instance) for ref in refs]


def _host_of(
    ref: HostRef,
    by_name: dict[str, HostRow],
    by_id: dict[str, HostRow],
    host_of_instance: dict[str, str],
) -> HostRow | ClusterplaneError:
    host_name, instance_id = ref
    if host_name is not None:
        named = by_name.get(host_name)
        return named or NotFound(f"host '{host_name}' not found", param="host_name")
    if instance_id is not None:
        host_id = host_of_instance.get(instance_id)
        serving = by_id.get(host_id) if host_id else None
        return serving or NotFound(f"instance '{instance_id}' not found", param="instance_id")
    return InvalidRequest("name the host (host_name) or the instance (instance_id)")


def check_signal(signal: Signal) -> None:
    """Refuse a signal that cannot be classified (before anything is written)."""
    if signal.kind == health.EventKind.XID and signal.code is None:
        raise InvalidRequest("an xid event needs its xid_code", param="xid_code")


def serving_node(session: Session, host: HostRow) -> NodeRow | None:
    """The GPU worker `host` serves, if any (from the identity map when preloaded)."""
    if host.node_row_id is None:
        return None
    node = session.get(NodeRow, host.node_row_id)
    if node is None or node.deleted_at is not None or node.role != NodeRole.GPU_WORKER:
        return None
    return node


def ingest_event(
    session: Session,
    settings: Settings,
    host: HostRow,
    signal: Signal,
    now: datetime,
    *,
    facts: NodeFacts | None = None,
) -> HealthEventRow:
    """Store a signal, exclude its node if it is unhealthy, and propose the repair.

    `facts`, when given, must cover the host's serving node (a batch loads them for all
    its signals at once); without them they are read for this node alone.
    """
    check_signal(signal)
    verdict = health.classify(signal.kind, signal.code)
    node = serving_node(session, host)
    event = HealthEventRow(
        id=new_uuid(),
        host_id=host.id,
        host_name=host.name,
        cluster_id=node.cluster_id if node else None,
        node_row_id=node.id if node else None,
        instance_id=node.instance_id if node else None,
        kind=signal.kind,
        code=signal.code,
        gpu_index=signal.gpu_index,
        alert_name=verdict.alert_name,
        severity=verdict.severity,
        action=verdict.action,
        title=verdict.title,
        message=signal.message,
        source=signal.source,
        check_run_id=signal.check_run_id,
        observed_at=signal.observed_at or now,
        ingested_at=now,
    )
    session.add(event)
    record_event(
        session,
        object_type="health_event",
        object_id=event.id,
        kind="ingested",
        message=f"{verdict.alert_name} ({verdict.title}) on {host.name}",
        at=now,
        scope=scope_in(session, event.cluster_id, event.node_row_id),
    )
    if node is not None and verdict.unhealthy:
        _exclude(session, node, event, now)
        if facts is not None:
            facts.excluded(node)
        evaluate_event(session, settings.health, event, now, facts=facts)
    elif verdict.unhealthy:
        why = f"{verdict.alert_name} on an idle host"
        check_runs.quarantine_idle_host(session, settings, host, why, now)
    return event


def _exclude(session: Session, node: NodeRow, event: HealthEventRow, now: datetime) -> None:
    """Hold the node out of service: unhealthy, cordoned (by us unless already cordoned)."""
    node.health = UNHEALTHY
    if node.cordoned_by is None:
        node.cordoned_by = CORDONED_BY_US
        record_event(
            session,
            object_type="node",
            object_id=node.id,
            kind="cordoned",
            message=f"excluded from service: {event.alert_name}",
            at=now,
            scope=scope_in(session, node.cluster_id, node.id),
        )
    refresh_node_status(node)
    cluster = session.get(ClusterRow, node.cluster_id)
    if cluster is not None and cluster.phase == ClusterPhase.READY:
        # Degraded at once, without waiting for (or paying for) a cluster controller pass;
        # the controller moves it back to Ready once no worker is unhealthy or in repair.
        set_cluster_phase(session, cluster, ClusterPhase.DEGRADED, now)


def nudge_cluster(session: Session, cluster_id: str, now: datetime) -> None:
    cluster = session.get(ClusterRow, cluster_id)
    if cluster is not None and cluster.deleted_at is None:
        cluster.next_reconcile_at = now


def worker_health(session: Session, cluster_id: str) -> tuple[int, int]:
    """(unhealthy, serving) GPU workers of a cluster; one not running counts as unhealthy."""
    rows = session.execute(
        select(NodeRow.health, NodeRow.phase).where(
            NodeRow.cluster_id == cluster_id,
            NodeRow.role == NodeRole.GPU_WORKER,
            NodeRow.deleted_at.is_(None),
            NodeRow.marked_for_deletion.is_(False),
        )
    ).all()
    unhealthy = sum(1 for h, p in rows if is_unhealthy_worker(h, p))
    return unhealthy, len(rows)


def evaluate_event(
    session: Session,
    settings: HealthSettings,
    event: HealthEventRow,
    now: datetime,
    *,
    facts: NodeFacts | None = None,
) -> RemediationRow | None:
    """Propose (or link) the repair an open signal asks for; level-triggered, idempotent."""
    event.next_reconcile_at = None
    node = session.get(NodeRow, event.node_row_id) if event.node_row_id else None
    action = health.Action(event.action)
    if (
        event.resolved_at is not None
        or node is None
        or node.deleted_at is not None
        or node.marked_for_deletion
        or action == health.Action.NONE
    ):
        return None
    wanted = health.mode_for(action)
    assert wanted is not None
    facts = facts or NodeFacts.load(session, [node])
    history = facts.history(node.id, settings, now)
    open_row = history.open
    if open_row is not None:
        event.remediation_id = open_row.id
        event.held_reason = None
        _escalate_in_place(session, open_row, wanted, now)
        return open_row
    cluster = session.get(ClusterRow, node.cluster_id)
    if cluster is None or cluster.delete_requested_at is not None:
        return None
    if cluster.phase not in STEADY_PHASES:
        event.held_reason = "the cluster is still being brought up"
        event.next_reconcile_at = now + timedelta(minutes=1)
        return None
    unhealthy, workers = facts.worker_health(cluster.id)
    hold = rails.hold_for(
        rails.SignalFacts(
            auto_remediation_enabled=node.auto_remediation_enabled,
            has_open_remediation=False,
            last_ended_at=history.last_ended_at,
            unhealthy_workers=unhealthy,
            workers=workers,
        ),
        now=now,
        cooldown=timedelta(seconds=settings.cooldown_seconds),
        max_unhealthy_share=settings.max_unhealthy_share,
    )
    if hold is not None:
        _hold(session, event, cluster, hold, unhealthy, workers, settings, now)
        return None
    if cluster.remediation_paused_reason is not None:
        cluster.remediation_paused_reason = None
        record_event(
            session,
            object_type="cluster",
            object_id=cluster.id,
            kind="remediation_resumed",
            message=f"{unhealthy} of {workers} GPU workers unhealthy",
            at=now,
            scope=cluster_scope(cluster),
        )
    row = _propose(session, event, cluster, node, wanted, history.did_not_help, now)
    facts.proposed(row)
    return row


def _hold(
    session: Session,
    event: HealthEventRow,
    cluster: ClusterRow,
    hold: rails.Hold,
    unhealthy: int,
    workers: int,
    settings: HealthSettings,
    now: datetime,
) -> None:
    event.held_reason = hold.reason
    event.next_reconcile_at = hold.retry_at
    stopped = rails.over_stop_rule(unhealthy, workers, settings.max_unhealthy_share)
    if stopped and cluster.remediation_paused_reason != hold.reason:
        cluster.remediation_paused_reason = hold.reason
        record_event(
            session,
            object_type="cluster",
            object_id=cluster.id,
            kind="remediation_stopped",
            message=hold.reason,
            at=now,
            scope=cluster_scope(cluster),
        )


def _propose(
    session: Session,
    event: HealthEventRow,
    cluster: ClusterRow,
    node: NodeRow,
    wanted: RemediationMode,
    did_not_help: RemediationMode | None,
    now: datetime,
) -> RemediationRow:
    mode = health.escalate(wanted, did_not_help)
    reason = f"{event.alert_name}: {event.title} on {event.host_name}"
    if mode != wanted:
        reason += f" (escalated from {wanted}: the last repair did not help)"
    row = recommend(session, node, mode=mode, reason=reason, now=now)
    row.passive_health_check_event_id = event.id
    row.active_health_check_run_id = event.check_run_id
    event.remediation_id = row.id
    event.held_reason = None
    if auto_approves(session, cluster):
        row.state = S.PENDING
        row.reviewed_by = AUTO_APPROVED
        row.review_time = now
        row.next_reconcile_at = now
    return row


def auto_approves(session: Session, cluster: ClusterRow) -> bool:
    if cluster.auto_approve_remediations:
        return True
    project = session.get(ProjectRow, cluster.project_id)
    return bool(project and project.auto_approve_remediations)


def _escalate_in_place(
    session: Session, row: RemediationRow, wanted: RemediationMode, now: datetime
) -> None:
    """A pending proposal takes a stronger mode when a stronger signal arrives (spec §2.8)."""
    current = RemediationMode(row.mode)
    if row.state != S.PENDING_APPROVAL or health.strength(wanted) <= health.strength(current):
        return
    row.mode = wanted
    row.update_time = now
    record_event(
        session,
        object_type="remediation",
        object_id=row.id,
        kind="escalated",
        message=f"{current} -> {wanted}",
        at=now,
        scope=scope_in(session, row.cluster_id, row.node_row_id),
    )

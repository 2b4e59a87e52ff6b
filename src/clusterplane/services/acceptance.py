"""Acceptance tests at bring-up: judge every worker, keep failing ones out, replace them.

Called by the cluster controller when the driver's acceptance step (or NCCL step) is done.
The checks follow the cluster's `acceptance_tests_params` (spec §3.8): DCGM diagnostics
at the requested level (MEDIUM by default), GPU burn and single-node NCCL in
`RUNNING_ACCEPTANCE_TESTS`; multi-node NCCL and IB write bandwidth in
`RUNNING_NCCL_TESTS`. Only hosts with an open fault can fail on the simulated fleet, so
only those are measured (one query for the cluster's hosts); a failed check is stored as
a check run (purpose `acceptance`, its figures as evidence) and raised as a health signal
on its node, which excludes the node. A failing node is replaced by a spare in the same
fabric when there is one (its host is quarantined for repair); otherwise it stays
excluded and the repair pipeline takes it once the cluster runs. Workers already excluded
are not tested again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, HealthCheckRunRow, HostFaultRow, HostRow, NodeRow
from clusterplane.domain.checks import LEVEL_OF, CheckKind, CheckPurpose, CheckState, judge
from clusterplane.domain.enums import ClusterPhase, DcgmDiagLevel
from clusterplane.domain.health import EventKind
from clusterplane.errors import CapacityUnavailable
from clusterplane.providers.simulated import checks as simulated
from clusterplane.services import health
from clusterplane.services.allocation import NewNode, add_worker_nodes, allocate_hosts, located
from clusterplane.services.events import record_event
from clusterplane.services.ids import new_uuid
from clusterplane.settings import Settings


def planned_checks(cluster: ClusterRow, phase: ClusterPhase) -> list[tuple[CheckKind, int | None]]:
    params = cluster.acceptance_tests_params or {}
    if phase == ClusterPhase.RUNNING_NCCL_TESTS:
        return [(CheckKind.NCCL_MULTI_NODE, None), (CheckKind.IB_WRITE_BW, None)]
    planned: list[tuple[CheckKind, int | None]] = []
    if not params.get("dcgm_diag_skipped"):
        level = params.get("dcgm_diag_level") or DcgmDiagLevel.MEDIUM
        planned.append((CheckKind.DCGM_DIAG, LEVEL_OF.get(DcgmDiagLevel(level), 2)))
    if not params.get("gpu_burn_skipped"):
        planned.append((CheckKind.GPU_BURN, None))
    if not params.get("nccl_single_node_skipped"):
        planned.append((CheckKind.NCCL_SINGLE_NODE, None))
    return planned


def failing_workers(
    session: Session,
    settings: Settings,
    cluster: ClusterRow,
    workers: list[NodeRow],
    phase: ClusterPhase,
    now: datetime,
) -> list[tuple[NodeRow, HealthCheckRunRow]]:
    """Workers that fail this phase's checks, each with the failed run as evidence."""
    testable = {w.host_id: w for w in workers if w.health != health.UNHEALTHY and w.host_id}
    if not testable:
        return []
    faulty: dict[str, list[simulated.Fault]] = {}
    for row in session.scalars(
        select(HostFaultRow).where(
            HostFaultRow.host_id.in_(list(testable)),
            HostFaultRow.cleared_at.is_(None),
            HostFaultRow.injected_at <= now,
        )
    ):
        faulty.setdefault(row.host_id, []).append(simulated.Fault(row.kind, row.code))
    failing: list[tuple[NodeRow, HealthCheckRunRow]] = []
    for host_id in sorted(faulty):
        host = session.get(HostRow, host_id)
        if host is None:
            continue
        for kind, level in planned_checks(cluster, phase):
            run = _judged_run(
                session, settings, host, testable[host_id], kind, level, faulty[host_id], now
            )
            if run.state == CheckState.FAILED:
                failing.append((testable[host_id], run))
                break
    return failing


def _judged_run(
    session: Session,
    settings: Settings,
    host: HostRow,
    node: NodeRow,
    kind: CheckKind,
    level: int | None,
    found: list[simulated.Fault],
    now: datetime,
) -> HealthCheckRunRow:
    run_id = new_uuid()
    figures = simulated.measure(
        settings.simulation.seed, run_id, kind, level, host.gpu_type, host.num_gpus, found
    )
    verdict = judge(kind, host.gpu_type, host.ib_hca_type, figures)
    run = HealthCheckRunRow(
        id=run_id,
        host_id=host.id,
        host_name=host.name,
        cluster_id=node.cluster_id,
        node_row_id=node.id,
        check=kind,
        level=level,
        purpose=CheckPurpose.ACCEPTANCE,
        state=CheckState.PASSED if verdict.passed else CheckState.FAILED,
        result=figures,
        message=verdict.message,
        created_at=now,
        started_at=now,
        finished_at=now,
    )
    session.add(run)
    return run


def exclude_and_replace(
    session: Session,
    settings: Settings,
    cluster: ClusterRow,
    node: NodeRow,
    run: HealthCheckRunRow,
    next_ordinal: int,
    now: datetime,
) -> NewNode | None:
    """Exclude a node that failed acceptance; put a spare from its fabric in its place."""
    host = session.get(HostRow, node.host_id or "")
    if host is None:
        return None
    health.ingest_event(
        session,
        settings,
        host,
        health.Signal(
            kind=EventKind.ACTIVE_CHECK,
            message=f"acceptance test failed: {run.message}",
            source="acceptance",
            check_run_id=run.id,
        ),
        now,
    )
    serving = session.scalars(
        select(HostRow).where(HostRow.cluster_id == cluster.id, HostRow.node_row_id.is_not(None))
    ).all()
    try:
        [spare] = allocate_hosts(session, cluster, 1, now, existing=[located(h) for h in serving])
    except CapacityUnavailable:
        return None
    [replacement] = add_worker_nodes(
        session, cluster, [spare], next_ordinal, now, origin="replacement"
    )
    node.marked_for_deletion = True
    node.removal_reason = "quarantined"
    node.status = "Draining"
    record_event(
        session,
        object_type="cluster",
        object_id=cluster.id,
        kind="acceptance_replaced",
        message=f"{node.node_name} on {host.name} failed {run.check}; "
        f"replaced by {replacement.node_name} on {spare.name}",
        at=now,
    )
    return replacement

"""Acceptance tests at bring-up: judge every worker, keep failing ones out, replace them.

Called by the cluster controller when the flavour's acceptance step (or NCCL step) is
done. The checks follow the cluster's `acceptance_tests_params` (spec §3.8): DCGM
diagnostics at the requested level (MEDIUM by default), GPU burn and single-node NCCL in
`RUNNING_ACCEPTANCE_TESTS`; multi-node NCCL and IB write bandwidth in
`RUNNING_NCCL_TESTS`. The controller has every worker's host driver run them (its check
feature) and hands the figures here as `CheckResult`s; a check a driver could not run
fails (unknown state fails closed). A worker that fails one has its checks stored as check
runs (purpose `acceptance`, the figures as evidence) up to the failed one, which is raised
as a health signal on its node and excludes the node. A failing node is replaced by a
spare in the same fabric when there is one (its host is quarantined for repair);
otherwise it stays excluded and the repair pipeline takes it once the cluster runs.
Workers already excluded are not tested again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, HealthCheckRunRow, HostRow, NodeRow
from clusterplane.domain.checks import LEVEL_OF, CheckKind, CheckPurpose, CheckState, judge
from clusterplane.domain.enums import ClusterPhase, DcgmDiagLevel
from clusterplane.domain.health import EventKind
from clusterplane.errors import CapacityUnavailable
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.capacity.allocation import (
    NewNode,
    add_worker_nodes,
    allocate_hosts,
    located,
)
from clusterplane.services.events.events import cluster_scope, record_event
from clusterplane.services.health import health
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


@dataclass(frozen=True)
class CheckResult:
    """One acceptance check on one worker, as its host driver reported it."""

    node_id: str
    kind: CheckKind
    level: int | None
    figures: dict[str, Any]
    failure: str | None = None  # the driver could not run it: why


class Worker(Protocol):
    """What judging a worker reads of it (a node row, or its columns)."""

    @property
    def id(self) -> str: ...
    @property
    def cluster_id(self) -> str: ...
    @property
    def host_id(self) -> str | None: ...
    @property
    def health(self) -> str: ...


W = TypeVar("W", bound=Worker)


def failing_workers(
    session: Session,
    cluster: ClusterRow,
    workers: Sequence[W],
    results: list[CheckResult],
    now: datetime,
) -> list[tuple[W, HealthCheckRunRow]]:
    """Workers that failed this phase's checks, each with the failed run as evidence."""
    testable = {w.id: w for w in workers if w.health != health.UNHEALTHY and w.host_id}
    by_node: dict[str, list[CheckResult]] = {}
    for result in results:
        if result.node_id in testable:
            by_node.setdefault(result.node_id, []).append(result)
    failing: list[tuple[W, HealthCheckRunRow]] = []
    judged = sorted((testable[n] for n in by_node), key=lambda n: n.host_id or "")
    hosts = _hosts(session, [n.host_id for n in judged if n.host_id])
    for node in judged:
        host = hosts.get(node.host_id or "")
        if host is None:
            continue
        verdicts = [(r, _verdict(host, r)) for r in by_node[node.id]]
        if all(passed for _, (passed, _) in verdicts):
            continue
        for result, (passed, message) in verdicts:
            run = _stored_run(session, host, node, result, passed, message, now)
            if not passed:
                failing.append((node, run))
                break
    return failing


class _Host(NamedTuple):
    """What judging a worker's checks and storing its failed run need of its host."""

    id: str
    name: str
    gpu_type: str
    ib_hca_type: str


def _hosts(session: Session, ids: list[str], chunk: int = 500) -> dict[str, _Host]:
    """The hosts of `ids` as columns, a query per `chunk` of them (not one per worker)."""
    columns = (HostRow.id, HostRow.name, HostRow.gpu_type, HostRow.ib_hca_type)
    found: dict[str, _Host] = {}
    for start in range(0, len(ids), chunk):
        rows = session.execute(select(*columns).where(HostRow.id.in_(ids[start : start + chunk])))
        found.update((row[0], _Host(*row)) for row in rows)
    return found


def _verdict(host: _Host, result: CheckResult) -> tuple[bool, str]:
    if result.failure is not None:
        return False, result.failure
    verdict = judge(result.kind, host.gpu_type, host.ib_hca_type, result.figures)
    return verdict.passed, verdict.message


def _stored_run(
    session: Session,
    host: _Host,
    node: Worker,
    result: CheckResult,
    passed: bool,
    message: str,
    now: datetime,
) -> HealthCheckRunRow:
    run = HealthCheckRunRow(
        id=new_uuid(),
        host_id=host.id,
        host_name=host.name,
        cluster_id=node.cluster_id,
        node_row_id=node.id,
        check=result.kind,
        level=result.level,
        purpose=CheckPurpose.ACCEPTANCE,
        state=CheckState.PASSED if passed else CheckState.FAILED,
        result=result.figures,
        message=message,
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
        scope=cluster_scope(cluster, node.id),
    )
    return replacement

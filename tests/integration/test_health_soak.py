"""Soak: 30 fleet days of seeded faults at ten times the published rate, on a manual clock.

The fleet (small.yaml: 16 H100 and 4 L40 hosts) runs four clusters; the fault model
(`simulation.fault_model`, Llama 3's interruption rate x10) puts its faults on every host,
serving or spare. One project approves repairs automatically; the other cluster's owner
approves every proposal it sees. Fleet time jumps from one due time to the next (at least
`MIN_STEP` apart), so 30 days run in seconds. Checked all along: no host serves two
clusters. Checked at the end, after the last fault and a settling period: every cluster
not over the stop rule is Ready with every worker healthy, and every remediation ended
(none lost, none stuck), every actionable signal on a serving node led to one.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from clusterplane.db.engine import transaction
from clusterplane.db.rows import (
    ClusterRow,
    HealthCheckRunRow,
    HealthEventRow,
    HostRow,
    NodeRow,
    RemediationRow,
    VolumeRow,
)
from clusterplane.domain import rails
from clusterplane.domain.enums import NodeRole
from clusterplane.domain.remediation import TERMINAL
from clusterplane.simulation import fault_model, faults
from clusterplane.simulation.rows import HostFaultRow
from tests.integration.test_lifecycle import create
from tests.support.engine import Engine

SEED = 20261127
DAYS = 30
SETTLE_DAYS = 4
MIN_STEP = 60.0
DUE_TABLES = (
    ClusterRow,
    RemediationRow,
    VolumeRow,
    HealthEventRow,
    HealthCheckRunRow,
    HostFaultRow,
)


def next_due(engine: Engine) -> Any:
    with transaction(engine.app.sessions) as session:
        times = [
            session.scalar(
                select(func.min(t.next_reconcile_at)).where(
                    t.deleted_at.is_(None), t.next_reconcile_at.is_not(None)
                )
            )
            for t in DUE_TABLES
        ]
    return min((t for t in times if t is not None), default=None)


def assert_no_host_in_two_clusters(engine: Engine) -> None:
    with transaction(engine.app.sessions) as session:
        live = session.execute(
            select(NodeRow.host_id, NodeRow.cluster_id).where(
                NodeRow.deleted_at.is_(None),
                NodeRow.role == NodeRole.GPU_WORKER,
                NodeRow.marked_for_deletion.is_(False),
            )
        ).all()
        owners = {h.id: h.cluster_id for h in session.scalars(select(HostRow))}
    clusters_per_host: dict[str, set[str]] = {}
    for host_id, cluster_id in live:
        clusters_per_host.setdefault(host_id, set()).add(cluster_id)
    for host_id, clusters in clusters_per_host.items():
        assert len(clusters) == 1, f"host {host_id} serves {clusters}"
        assert owners[host_id] in clusters


def run_until(engine: Engine, end: Any, checks_every: timedelta) -> int:
    steps = 0
    next_check = engine.clock.now() + checks_every
    while engine.clock.now() < end:
        due = next_due(engine)
        now = engine.clock.now()
        target = max(due, now + timedelta(seconds=MIN_STEP)) if due else end
        engine.clock.set(min(target, end))
        engine.app.manager.run_until_idle(max_passes=1000)
        steps += 1
        if engine.clock.now() >= next_check:
            assert_no_host_in_two_clusters(engine)
            next_check = engine.clock.now() + checks_every
    return steps


def approve_pending(engine: Engine, cluster_id: str) -> None:
    with transaction(engine.app.sessions) as session:
        waiting = session.scalar(
            select(func.count())
            .select_from(RemediationRow)
            .where(
                RemediationRow.cluster_id == cluster_id, RemediationRow.state == "PENDING_APPROVAL"
            )
        )
    if not waiting:
        return
    listed = engine.client.get(
        f"/v1/compute/clusters/{cluster_id}/instances/-/remediations",
        params={"state": "PENDING_APPROVAL"},
        headers=engine.headers(),
    ).json()["remediations"]
    for row in listed:
        response = engine.client.post(
            f"/v1/compute/clusters/{cluster_id}/instances/-/remediations/{row['id']}/approve",
            json={"comment": "soak owner approves"},
            headers=engine.headers(),
        )
        assert response.status_code == 200, response.text


def approved(engine: Engine, cluster_id: str) -> int:
    with transaction(engine.app.sessions) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(RemediationRow)
                .where(
                    RemediationRow.cluster_id == cluster_id,
                    RemediationRow.review_comment == "soak owner approves",
                )
            )
            or 0
        )


def test_thirty_days_of_faults_at_ten_times_the_published_rate_all_heal(engine: Engine):
    clusters = [
        create(engine, cluster_name=f"h100-{i}", num_gpus=24)["cluster_id"] for i in range(3)
    ]
    manual = create(
        engine,
        cluster_name="l40",
        gpu_type="L40_PCIE",
        region="test-2",
        num_gpus=24,
        nvidia_version_id="cu126-drv560-ubuntu2204",
    )["cluster_id"]
    engine.advance(3 * 3600, step=120)
    for cid in clusters:
        response = engine.client.put(
            f"/admin/v1/clusters/{cid}/remediation-policy",
            json={"auto_approve": True},
            headers=engine.headers(),
        )
        assert response.status_code == 200
    start = engine.clock.now()
    with transaction(engine.app.sessions) as session:
        hosts = {h.name: h for h in session.scalars(select(HostRow))}
        plan = fault_model.schedule(SEED, sorted(hosts), days=DAYS, rate_multiplier=10)
        for item in plan:
            faults.inject_fault(
                session, hosts[item.host], item.fault, start + timedelta(seconds=item.at_seconds)
            )
    assert len(plan) >= 15, "the fault model must actually fault this fleet"

    end = start + timedelta(days=DAYS)
    steps = 0
    while engine.clock.now() < end:
        chunk = min(end, engine.clock.now() + timedelta(hours=1))
        steps += run_until(engine, chunk, timedelta(hours=6))
        approve_pending(engine, manual)
    approvals = approved(engine, manual)
    settle_end = end + timedelta(days=SETTLE_DAYS)
    while engine.clock.now() < settle_end:
        chunk = min(settle_end, engine.clock.now() + timedelta(hours=1))
        steps += run_until(engine, chunk, timedelta(hours=6))
        approve_pending(engine, manual)

    assert_no_host_in_two_clusters(engine)
    health = engine.app.manager.ctx.settings.health
    with transaction(engine.app.sessions) as session:
        rows = list(session.scalars(select(RemediationRow)))
        states = Counter(r.state for r in rows)
        assert rows, "faults at this rate must cause repairs"
        stuck = [(r.id, r.state, r.mode) for r in rows if r.state not in TERMINAL]
        assert stuck == [], f"remediations not finished: {stuck}"
        lost = session.scalars(
            select(HealthEventRow).where(
                HealthEventRow.resolved_at.is_(None),
                HealthEventRow.action != "none",
                HealthEventRow.remediation_id.is_(None),
                HealthEventRow.node_row_id.is_not(None),
            )
        ).all()
        serving_lost = [
            e.id
            for e in lost
            if (n := session.get(NodeRow, e.node_row_id)) is not None
            and n.deleted_at is None
            and not n.marked_for_deletion
        ]
        assert serving_lost == [], "a signal on a serving node led to no remediation"
        for cid in [*clusters, manual]:
            cluster = session.get(ClusterRow, cid)
            assert cluster is not None
            workers = session.scalars(
                select(NodeRow).where(
                    NodeRow.cluster_id == cid,
                    NodeRow.role == NodeRole.GPU_WORKER,
                    NodeRow.deleted_at.is_(None),
                )
            ).all()
            unhealthy = sum(1 for n in workers if n.health == "unhealthy")
            if rails.over_stop_rule(unhealthy, len(workers), health.max_unhealthy_share):
                continue
            assert cluster.status == "Ready", (cid, cluster.status, unhealthy, states)
            assert len(workers) == 3 and unhealthy == 0
    assert states["SUCCEEDED"] >= 1
    assert approvals >= 1, "the owner of the manual cluster approved proposals"
    print(f"soak: {len(plan)} faults, {len(rows)} remediations {dict(states)}, {steps} steps")

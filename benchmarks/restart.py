"""Figure 7: a 100,000-GPU fleet's full reconcile pass after a restart.

The fleet of figure 5: 12,500 8-GPU hosts (five fabrics of 2,500), 11,000 of them serving
1,375 Ready clusters of eight workers and three control-plane VMs, seeded in bulk. Every
cluster is then made due (`next_reconcile_at` in the past, no lease), as a restart that
must look at everything again would leave them, and a server starts on the database with
its controllers on (simulated drivers, instantaneous steps, the default batch of 50 rows
per pass). Measured from the process's start: until it answers `/readyz` (migrations
checked, the fleet file of 12,500 hosts synced, the admin key), and until no cluster is
due any more: every one was leased, its nodes described by their drivers and the result
applied. Baseline: the same restart with nothing due (start-up and an idle first pass).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from benchmarks.fleetgen import FleetShape, write_fleet
from benchmarks.report import Figure, Section
from benchmarks.seed import prepare_database, seed_ready_clusters
from benchmarks.support import BenchServer, Samples, log
from clusterplane.db.engine import make_engine
from clusterplane.db.rows import ClusterRow
from clusterplane.services.access.auth import generate_key_text

TIMEOUT_S = 900.0


@dataclass(frozen=True)
class RestartPlan:
    fleet: FleetShape
    clusters: int
    workers_per_cluster: int


FULL = RestartPlan(
    fleet=FleetShape(fabrics=5, blocks=5, racks=25, hosts_per_rack=20),
    clusters=1375,
    workers_per_cluster=8,
)
QUICK = RestartPlan(
    fleet=FleetShape(fabrics=1, blocks=2, racks=4, hosts_per_rack=16),
    clusters=12,
    workers_per_cluster=8,
)


@dataclass
class Restart:
    ready_s: float  # process start -> /readyz answers
    pass_s: float  # process start -> no cluster due
    cpu_s: float  # server CPU seconds until then
    peak_rss_mib: float


def _due(engine: Engine) -> int:
    """Clusters still due since `_make_due` (a reconciled one is due later, or never)."""
    with engine.connect() as conn:
        return int(
            conn.scalar(
                select(func.count()).where(
                    ClusterRow.next_reconcile_at <= ClusterRow.created_at,
                    ClusterRow.deleted_at.is_(None),
                )
            )
            or 0
        )


def _make_due(engine: Engine) -> int:
    with engine.begin() as conn:
        done = conn.execute(
            update(ClusterRow)
            .where(ClusterRow.deleted_at.is_(None))
            .values(
                next_reconcile_at=ClusterRow.created_at,
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
            )
        )
    return int(done.rowcount)


def _restart(server: BenchServer, engine: Engine) -> Restart:
    started = time.perf_counter()
    server.start(timeout=TIMEOUT_S)
    while True:
        try:
            if httpx.get(server.base_url + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    ready = time.perf_counter() - started
    deadline = started + TIMEOUT_S
    while _due(engine) and time.perf_counter() < deadline:
        time.sleep(0.05)
    if _due(engine):
        raise TimeoutError(f"clusters still due after {TIMEOUT_S:.0f} s")
    passed = time.perf_counter() - started
    cpu, peak = server.cpu_seconds(), server.peak_rss_mib()
    server.stop()
    return Restart(ready, passed, cpu, peak)


def run(plan: RestartPlan, workdir: Path) -> list[Section]:
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir}/restart.db"
    key = generate_key_text()
    fleet = write_fleet(workdir / "fleet.yaml", plan.fleet)
    prepare_database(url, fleet, key)
    engine = make_engine(url)
    try:
        seed_ready_clusters(engine, workers=[plan.workers_per_cluster] * plan.clusters)
        common = {"database_url": url, "fleet": fleet, "api_key": key, "duration_factor": 0.0}
        log(f"restart: {plan.fleet.hosts:,} hosts, {plan.clusters:,} clusters, nothing due")
        idle = _restart(BenchServer(workdir, **common, name="restart-idle"), engine)
        due = _make_due(engine)
        log(f"restart: {due:,} clusters due")
        full = _restart(BenchServer(workdir, **common, name="restart-due"), engine)
    finally:
        engine.dispose()
    log(f"restart: ready in {full.ready_s:.1f} s, every cluster reconciled in {full.pass_s:.1f} s")
    return [_section(plan, due, idle, full)]


def _section(plan: RestartPlan, due: int, idle: Restart, full: Restart) -> Section:
    nodes = due * (plan.workers_per_cluster + 3)
    gpus = plan.fleet.hosts * 8
    section = Section(
        title=f"7. Full reconcile after a restart, {gpus:,}-GPU fleet (SQLite)",
        intro=__doc__.split("\n\n", 1)[1].strip()
        + f"\n\nThis run: {plan.fleet.hosts:,} hosts, {due:,} clusters due ({nodes:,} nodes).",
    )
    pass_only = full.pass_s - full.ready_s
    section.figures += [
        Figure(
            name="Start -> `/readyz` answers",
            unit="s",
            value=Samples([full.ready_s]),
            baseline_name="the same start, nothing due",
            baseline=Samples([idle.ready_s]),
            target="none (reported)",
            check=None,
            peak_rss_mib=full.peak_rss_mib,
        ),
        Figure(
            name=f"Start -> every one of the {due:,} clusters reconciled",
            unit="s",
            value=Samples([full.pass_s]),
            baseline_name="start -> idle, nothing due",
            baseline=Samples([idle.pass_s]),
            target="measured and reported (issue)",
            check=None,
            peak_rss_mib=full.peak_rss_mib,
            note=f"the pass after start-up took {pass_only:.1f} s: "
            f"{pass_only * 1000 / max(due, 1):.1f} ms per cluster, "
            f"{pass_only * 1000 / max(nodes, 1):.2f} ms per node; server CPU until then "
            f"{full.cpu_s:.1f} s ({idle.cpu_s:.1f} s with nothing due).",
            issue="A 100,000-GPU fleet's full reconcile pass after a restart: measured",
        ),
    ]
    return section

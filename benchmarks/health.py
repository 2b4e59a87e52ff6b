"""Figure 4: detection-to-action latency in a failure storm.

A fleet of 12,500 8-GPU hosts (five fabrics of 2,500), 11,000 of them serving 1,375 Ready
clusters of eight workers, seeded in bulk (`benchmarks.seed`). A storm then hits 1% of
the fleet (125 serving hosts, chosen by a seeded draw) with XID 79 at once, by two paths:

* **API**: 125 node agents POST `/admin/v1/health/events` at once, each on its own
  connection (one asyncio client). The
  answer comes after the event is stored, its node cordoned and the automated
  remediation (PENDING_APPROVAL, evidence linked) created and committed, so the round
  trip is the whole detection-to-action latency. Reports arriving together are written
  together, one transaction per batch (group commit, docs/health.md). Baseline: the same
  storm of harmless XID 13 events (stored, nothing excluded, nothing proposed).
* **Simulated agents**: 125 faults injected at once through the fault API; the simulated
  agents report them on the controllers' next passes. Latency per host: fault injected
  -> remediation `create_time`, on the fleet clock at time scale 1 (fleet seconds are
  wall seconds).

Afterwards every stormed node must be cordoned with exactly one remediation linked to its
event; the benchmark fails otherwise.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.engine import Engine

from benchmarks.fleetgen import FleetShape, write_fleet
from benchmarks.report import Figure, Section
from benchmarks.seed import prepare_database, seed_ready_clusters
from benchmarks.support import BenchServer, Samples, log
from clusterplane.db.engine import make_engine
from clusterplane.db.rows import HealthEventRow, HostRow, NodeRow, RemediationRow
from clusterplane.services.access.auth import generate_key_text
from clusterplane.simulation.rows import HostFaultRow

SEED = 5


@dataclass(frozen=True)
class HealthPlan:
    fleet: FleetShape
    workers_per_cluster: int
    clusters: int
    storm_share: float
    connections: int
    target_p99_s: float = 2.0


FULL = HealthPlan(
    fleet=FleetShape(fabrics=5, blocks=5, racks=25, hosts_per_rack=20),
    workers_per_cluster=8,
    clusters=1375,
    storm_share=0.01,
    connections=125,
)
QUICK = HealthPlan(
    fleet=FleetShape(fabrics=1, blocks=2, racks=4, hosts_per_rack=16),
    workers_per_cluster=8,
    clusters=12,
    storm_share=0.05,
    connections=6,
)


def _serving_hosts(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.scalars(select(HostRow.name).where(HostRow.node_row_id.is_not(None))).all()
        )


def _storm(server: BenchServer, hosts: list[str], xid: int, connections: int) -> Samples:
    """Every host's agent posts its event at once, each on its own connection.

    One asyncio client (not a thread per agent): on a two-core machine, 125 client threads
    would measure the load generator's scheduling more than the server.
    """
    return asyncio.run(_async_storm(server, hosts, xid, connections))


async def _async_storm(
    server: BenchServer, hosts: list[str], xid: int, connections: int
) -> Samples:
    samples = Samples()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=server.headers(), timeout=60, limits=limits
    ) as http:

        async def one(host: str) -> float:
            start = time.perf_counter()
            response = await http.post(
                "/admin/v1/health/events",
                json={"host_name": host, "kind": "xid", "xid_code": xid},
            )
            took = time.perf_counter() - start
            if response.status_code != 200:
                raise RuntimeError(f"ingest: {response.status_code} {response.text[:300]}")
            if xid == 79 and not response.json()["remediation_id"]:
                raise RuntimeError(f"no remediation for {host}: {response.json()['held_reason']}")
            return took

        for took in await asyncio.gather(*(one(h) for h in hosts)):
            samples.add(took)
    return samples


def _sequential_healthz(server: BenchServer, count: int = 50) -> Samples:
    """`/healthz` one at a time on one connection: what a request costs on this machine now."""
    samples = Samples()
    with server.client() as http:
        for _ in range(count):
            start = time.perf_counter()
            http.get("/healthz")
            samples.add(time.perf_counter() - start)
    return samples


def _check_actions(engine: Engine, hosts: list[str]) -> None:
    with engine.connect() as conn:
        for name in hosts:
            host = conn.execute(select(HostRow).where(HostRow.name == name)).one()
            node = conn.execute(select(NodeRow).where(NodeRow.id == host.node_row_id)).one()
            if node.cordoned_by is None or node.health != "unhealthy":
                raise RuntimeError(f"{name}: its node was not excluded")
            remediations = conn.scalars(
                select(RemediationRow.id).where(RemediationRow.node_row_id == node.id)
            ).all()
            if len(remediations) != 1:
                raise RuntimeError(f"{name}: {len(remediations)} remediations")


def _agent_storm(server: BenchServer, engine: Engine, hosts: list[str]) -> Samples:
    with httpx.Client(base_url=server.base_url, headers=server.headers(), timeout=60) as http:
        for host in hosts:
            response = http.post(
                f"/admin/v1/fleet/hosts/{host}/faults", json={"kind": "xid", "xid_code": 79}
            )
            if response.status_code != 200:
                raise RuntimeError(f"inject: {response.status_code} {response.text[:300]}")
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        with engine.connect() as conn:
            rows = conn.execute(
                select(HostFaultRow.injected_at, RemediationRow.create_time)
                .join(HealthEventRow, HealthEventRow.id == HostFaultRow.event_id)
                .join(RemediationRow, RemediationRow.id == HealthEventRow.remediation_id)
            ).all()
        if len(rows) >= len(hosts):
            samples = Samples()
            for injected, created in rows:
                samples.add((created - injected).total_seconds())
            return samples
        time.sleep(0.05)
    raise TimeoutError("the simulated agents' storm did not lead to every remediation")


def run(plan: HealthPlan, workdir: Path) -> list[Section]:
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir}/health.db"
    key = generate_key_text()
    fleet = write_fleet(workdir / "fleet.yaml", plan.fleet)
    prepare_database(url, fleet, key)
    engine = make_engine(url)
    seed_ready_clusters(engine, workers=[plan.workers_per_cluster] * plan.clusters)
    serving = _serving_hosts(engine)
    storm_size = max(1, round(plan.fleet.hosts * plan.storm_share))
    rng = random.Random(SEED)
    picked = rng.sample(serving, 3 * storm_size)
    api_hosts, baseline_hosts, agent_hosts = (
        picked[:storm_size],
        picked[storm_size : 2 * storm_size],
        picked[2 * storm_size :],
    )
    log(f"health: {plan.fleet.hosts:,} hosts, {len(serving):,} serving, storm of {storm_size}")
    server = BenchServer(workdir, database_url=url, fleet=fleet, api_key=key, name="health")
    try:
        server.start()
        idle_healthz = _sequential_healthz(server)
        baseline = _storm(server, baseline_hosts, 13, plan.connections)
        api = _storm(server, api_hosts, 79, plan.connections)
        _check_actions(engine, api_hosts)
        agents = _agent_storm(server, engine, agent_hosts)
        _check_actions(engine, agent_hosts)
        peak = server.peak_rss_mib()
    finally:
        server.stop()
        engine.dispose()
    log(f"health: API storm p99 {api.p99:.3f} s, agent storm p99 {agents.p99:.3f} s")
    limit = plan.target_p99_s
    section = Section(
        title="5. Detection to action in a failure storm (SQLite, one server)",
        intro=f"""
A fleet of {plan.fleet.hosts:,} hosts, {len(serving):,} of them serving {plan.clusters:,}
Ready clusters of {plan.workers_per_cluster} workers. A storm of XID 79 on {storm_size}
serving hosts ({plan.storm_share:.0%} of the fleet) at once: each event is ingested, its
node cordoned and an automated remediation created with the event as evidence. Every
stormed node was checked afterwards: excluded, with exactly one remediation.""",
    )
    section.figures.append(
        Figure(
            name=f"XID 79 storm via the API: POST -> remediation committed ({storm_size} hosts)",
            unit="s",
            value=api,
            baseline_name="harmless XID 13 storm (stored only)",
            baseline=baseline,
            target=f"p99 < {limit:g} s",
            check=lambda f: f.value.p99 < limit,
            peak_rss_mib=peak,
            note=f"{plan.connections} agents posting at once, one connection each.",
        )
    )
    section.figures.append(
        Figure(
            name=f"XID 79 storm via simulated agents: fault -> remediation ({storm_size} hosts)",
            unit="s",
            value=agents,
            baseline_name="the API storm",
            baseline=api,
            target=f"p99 < {limit:g} s",
            check=lambda f: f.value.p99 < limit,
            peak_rss_mib=peak,
            note="Fleet clock at time scale 1; includes the wait for the controllers' next "
            "pass (0.1 s poll, nudged by the injection).",
        )
    )
    section.notes.append(
        f"Machine state in this run: `GET /healthz`, one at a time on one connection, took "
        f"{idle_healthz.median * 1000:.1f} ms at the median before the storms (about 1 ms "
        "on an idle core): a storm's API latency scales with it."
    )
    if not section.figures[0].met:
        section.misses.append(
            f"API storm p99 {api.p99:.2f} s against a harmless-event storm of "
            f"{baseline.p99:.2f} s in the same run (median {api.median:.2f} s vs "
            f"{baseline.median:.2f} s): the time is the HTTP path of 125 simultaneous "
            "requests through one server process on a shared two-core machine (see the load "
            "average above), not the exclusion and proposal, which the simulated agents' "
            f"storm measures on the same server at p99 {agents.p99:.2f} s."
        )
    return [section]

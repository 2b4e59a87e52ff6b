"""Figure 2: requests per server CPU-second, as ratios to `/healthz` and to a trivial app.

One real server process (uvicorn, one worker, as `clusterplane serve` runs it) on SQLite
with 100 Ready clusters in the project, its read cache off (`read_cache_seconds = 0`) and
its controllers off (`--no-controllers`: no idle controller CPU to subtract, and the
clusters created here are not brought up by the process being measured; the controllers'
own cost is figure 3). A second server on the same database keeps the read cache on, for
GET as clients polling it see it. Beside them, the trivial FastAPI app of
`benchmarks/trivial.py` on uvicorn's defaults (h11 and asyncio) and on httptools and
uvloop: the baseline of the server's own floor.

In every round each endpoint is driven for the same time, in turn, by the load generator
(creates go to another project, so the listed one keeps its size). A figure is requests
per CPU-second of the server process that answered (median over rounds), so the load
generator sharing the machine does not count against the server; latencies are the load
generator's p50 and p99 (median over rounds).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from benchmarks import create_floor
from benchmarks.create_floor import CreateFloor
from benchmarks.fleetgen import FleetShape, write_fleet
from benchmarks.load import LoadGenerator, LoadResult
from benchmarks.report import Figure, Section
from benchmarks.seed import CREATE_BODY, seed_requests_database
from benchmarks.support import BenchServer, Samples, TrivialServer, log

LIST = "/v1/compute/clusters"
# The issue's targets.
FLOOR_TARGET = 1.5  # /healthz >= 1.5x the trivial app on uvicorn's defaults
GET_TARGET = 0.5  # GET one cluster (read cache off) >= 0.5x /healthz
CREATE_TARGET = 0.1  # create (8 GPUs, with its credentials) >= 0.1x /healthz
LIST_MS_PER_CLUSTER = 0.1  # server CPU per listed cluster


@dataclass(frozen=True)
class ThroughputPlan:
    rounds: int
    seconds: float
    connections: int
    fleet: FleetShape
    clusters: int = 100
    warmup_seconds: float = 1.0


FULL = ThroughputPlan(rounds=5, seconds=6, connections=4, fleet=FleetShape(fabrics=2))
QUICK = ThroughputPlan(
    rounds=1,
    seconds=1,
    connections=4,
    fleet=FleetShape(1, blocks=2, racks=4, hosts_per_rack=16),
    clusters=20,
    warmup_seconds=0,
)


@dataclass
class Runs:
    results: list[LoadResult] = field(default_factory=list)

    def per_core(self) -> Samples:
        return Samples([r.rps_per_core for r in self.results])

    def rps(self) -> float:
        return statistics.median(r.rps for r in self.results)

    def latency(self) -> str:
        p50 = statistics.median(r.p50_ms for r in self.results)
        p99 = statistics.median(r.p99_ms for r in self.results)
        return f"{p50:.1f} / {p99:.1f} ms"

    def errors(self) -> int:
        return sum(r.errors for r in self.results)

    def note(self) -> str:
        return f"{self.rps():,.0f} req/s wall-clock; errors {self.errors()}."


@dataclass(frozen=True)
class Endpoint:
    name: str
    server: str  # which of the servers answers it
    path: str
    body: str | None = None


def _seed(plan: ThroughputPlan, workdir: Path) -> tuple[str, Path, str]:
    url = f"sqlite:///{workdir}/throughput.db"
    fleet = write_fleet(workdir / "fleet.yaml", plan.fleet)
    key = seed_requests_database(url, fleet, plan.clusters, now=datetime.now(UTC), prefix="tp")
    return url, fleet, key


def run(plan: ThroughputPlan, workdir: Path) -> list[Section]:
    workdir.mkdir(parents=True, exist_ok=True)
    url, fleet, key = _seed(plan, workdir)
    load = LoadGenerator()
    common = {"database_url": url, "fleet": fleet, "api_key": key, "controllers": False}
    servers = {
        "server": BenchServer(workdir, **common, read_cache_seconds=0, name="tp"),
        "cached": BenchServer(workdir, **common, name="tp-cached"),
        "trivial": TrivialServer(workdir, http="h11", loop="asyncio", name="trivial-h11"),
        "trivial-fast": TrivialServer(
            workdir, http="httptools", loop="uvloop", name="trivial-httptools"
        ),
    }
    runs: dict[str, Runs] = {}
    peaks: dict[str, float] = {}
    try:
        for server in servers.values():
            server.start()
        with servers["server"].client() as http:
            cluster_id = http.get(LIST).json()["clusters"][0]["cluster_id"]
        body = orjson.dumps(CREATE_BODY).decode()
        endpoints = [
            Endpoint("trivial", "trivial", "/healthz"),
            Endpoint("trivial-fast", "trivial-fast", "/healthz"),
            Endpoint("healthz", "server", "/healthz"),
            Endpoint("get", "server", f"{LIST}/{cluster_id}"),
            Endpoint("list", "server", LIST),
            Endpoint("create", "server", LIST, body),
            Endpoint("get-cached", "cached", f"{LIST}/{cluster_id}"),
        ]
        runs = {e.name: Runs() for e in endpoints}

        def drive(e: Endpoint, seconds: float) -> LoadResult:
            target = servers[e.server]
            return load.run(
                target, e.path, seconds=seconds, connections=plan.connections, body=e.body
            )

        for e in endpoints if plan.warmup_seconds else ():
            drive(e, plan.warmup_seconds)
        for round_ in range(plan.rounds):
            for e in endpoints:
                runs[e.name].results.append(drive(e, plan.seconds))
            log(
                f"throughput round {round_ + 1}/{plan.rounds}: "
                + ", ".join(f"{n} {r.results[-1].rps_per_core:,.0f}/core" for n, r in runs.items())
            )
        peaks = {name: server.peak_rss_mib() for name, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    floor = create_floor.measure(workdir / "create-floor")
    log(
        f"create floor: credentials {floor.credentials_ms:.2f} ms, SQL {floor.statements_ms:.2f} ms"
    )
    return [_section(plan, runs, peaks, load.tool, floor)]


def _section(
    plan: ThroughputPlan,
    runs: dict[str, Runs],
    peaks: dict[str, float],
    tool: str,
    floor: CreateFloor,
) -> Section:
    section = Section(
        title="2. Requests per server CPU-second",
        intro=f"""
One uvicorn worker on SQLite, {plan.clusters} Ready clusters in the project, a fleet of
{plan.fleet.hosts:,} hosts, read cache and controllers off. Load: {tool},
{plan.connections} connections, {plan.seconds:g} s per endpoint per round, {plan.rounds}
rounds with the endpoints (and the trivial apps) interleaved, so every ratio is between
figures measured under the same conditions. Values are requests per CPU-second of the
server process (median over rounds); latency is the client's p50 / p99 (median over
rounds).""",
    )
    healthz = runs["healthz"]

    def figure(
        name: str,
        key: str,
        *,
        baseline: str,
        against: str,
        target: str,
        check: Callable[[Figure], bool] | None,
        note: str = "",
        server: str = "server",
        issue: str = "",
    ) -> Figure:
        measured = runs[key]
        return Figure(
            name=name,
            unit="req/s/core",
            value=measured.per_core(),
            baseline_name=baseline,
            baseline=runs[against].per_core(),
            target=target,
            check=check,
            peak_rss_mib=peaks.get(server),
            latency_text=measured.latency(),
            note=(note + " " if note else "") + measured.note(),
            issue=issue,
        )

    list_ms = _ms_per_cluster(runs["list"], plan.clusters)
    section.figures += [
        figure(
            "`/healthz`, this server (httptools + uvloop)",
            "healthz",
            baseline="trivial FastAPI app, uvicorn defaults (h11 + asyncio)",
            against="trivial",
            target=f">= {FLOOR_TARGET:g}x the trivial app",
            check=lambda f: f.ratio >= FLOOR_TARGET,
            issue="The server's own floor: /healthz >= 1.5x a trivial FastAPI app on uvicorn's "
            "defaults",
        ),
        figure(
            "Trivial FastAPI app, httptools + uvloop",
            "trivial-fast",
            baseline="the same app, uvicorn defaults (h11 + asyncio)",
            against="trivial",
            target="none (reported)",
            check=None,
            server="trivial-fast",
            note="What the faster uvicorn stack alone gives.",
        ),
        figure(
            "GET one cluster, read cache off",
            "get",
            baseline="`/healthz`, same server",
            against="healthz",
            target=f">= {GET_TARGET:g}x `/healthz`",
            check=lambda f: f.ratio >= GET_TARGET,
            note=f"{1000 / runs['get'].per_core().median:.2f} ms of server CPU per GET "
            f"(`/healthz` {1000 / healthz.per_core().median:.2f} ms).",
            issue="GET one cluster, read cache off: >= 0.5x /healthz",
        ),
        figure(
            f"List the project's {plan.clusters} clusters",
            "list",
            baseline="`/healthz`, same server",
            against="healthz",
            target=f"<= {LIST_MS_PER_CLUSTER:g} ms of server CPU per listed cluster",
            check=lambda f: _ms_per_cluster_of(f, plan.clusters) <= LIST_MS_PER_CLUSTER,
            note=f"{list_ms:.3f} ms of server CPU per listed cluster.",
            issue=f"List of {plan.clusters}: <= 0.1 ms of server CPU per listed cluster",
        ),
        figure(
            "Create an 8-GPU cluster, with its credentials",
            "create",
            baseline="`/healthz`, same server",
            against="healthz",
            target=f">= {CREATE_TARGET:g}x `/healthz`",
            check=lambda f: f.ratio >= CREATE_TARGET,
            note=f"{1000 / runs['create'].per_core().median:.1f} ms of server CPU per create.",
            issue="Create an 8-GPU cluster with its credentials: >= 0.1x /healthz",
        ),
        figure(
            "GET one cluster, read cache on (the default, 1 s)",
            "get-cached",
            baseline="`/healthz`, the uncached server",
            against="healthz",
            target="none (reported; no target relies on the cache)",
            check=None,
            server="cached",
        ),
    ]
    section.extra += _before_and_after(runs, plan.clusters)
    section.extra += ["", *_create_floor(runs, floor)]
    _explain_misses(section, runs, plan.clusters, floor)
    return section


def _create_floor(runs: dict[str, Runs], floor: CreateFloor) -> list[str]:
    request = 1000 / runs["healthz"].per_core().median
    create = 1000 / runs["create"].per_core().median
    lowest = floor.with_request(request)
    return [
        "The floor under a create (`benchmarks/create_floor.py`, measured in this run): what "
        "any create must cost, with no code of ours between its parts. Its best possible "
        "ratio to `/healthz` is `/healthz` over the floor.",
        "",
        "| Part | CPU per create |",
        "| --- | ---: |",
        f"| Being a request (`/healthz`, this server) | {request:.3f} ms |",
        "| Issuing and sealing its credentials (EC CA and client keys, two certificates, "
        f"the kubeconfig as PyYAML writes it) | {floor.credentials_ms:.3f} ms |",
        f"| Its {floor.statements} SQL statements, run by SQLite alone | "
        f"{floor.statements_ms:.3f} ms |",
        f"| **Floor** | **{lowest:.3f} ms** (at best {request / lowest:.2f}x `/healthz`) |",
        f"| This run's create | {create:.3f} ms ({create / lowest:.1f}x the floor) |",
    ]


def _explain_misses(
    section: Section, runs: dict[str, Runs], clusters: int, least: CreateFloor
) -> None:
    ms = {name: 1000 / r.per_core().median for name, r in runs.items()}
    floor, get, listed, create = (
        section.figures[0],
        section.figures[2],
        section.figures[3],
        section.figures[4],
    )
    if floor.met is False:
        section.misses.append(
            f"The floor: `/healthz` costs {ms['healthz']:.2f} ms of server CPU against the "
            f"trivial app's {ms['trivial']:.2f} ms on uvicorn's defaults and "
            f"{ms['trivial-fast']:.2f} ms on httptools + uvloop; the difference is this "
            "server's own middleware, which every request passes (request ids, its access "
            "line, slots in flight)."
        )
    if get.met is False:
        section.misses.append(
            f"GET: {ms['get']:.2f} ms of server CPU per GET against {ms['healthz']:.2f} ms for "
            "`/healthz`. Beyond what every request costs, a GET takes the caller (cached), "
            "one statement (the cluster's row, revision and stored document; on the event "
            "loop on SQLite, on a worker thread on PostgreSQL) and unsealing its kubeconfig."
        )
    if listed.met is False:
        section.misses.append(
            f"Lists: {ms['list'] / clusters:.3f} ms of server CPU per listed cluster. Each "
            "cluster is one row with its stored document (about 3 KB) and its sealed "
            "kubeconfig, unsealed and added (about 5 KB); a cluster whose document is "
            "behind is read and rendered on the spot (about 33 rows)."
        )
    if create.met is False:
        lowest = least.with_request(ms["healthz"])
        section.misses.append(
            f"Create: {ms['create']:.1f} ms of server CPU per create, against a floor of "
            f"{lowest:.2f} ms measured in the same run (the request, {ms['healthz']:.2f} ms; "
            f"issuing its credentials, {least.credentials_ms:.2f} ms; its statements run by "
            f"SQLite alone, {least.statements_ms:.2f} ms): with no code of ours at all a create "
            f"would reach {ms['healthz'] / lowest:.2f}x `/healthz`, and 0.1x leaves "
            f"{10 * ms['healthz'] - lowest:.2f} ms for validating it, placing it, building its "
            "statements and its response. The rest of what it costs now is the ORM's unit of "
            "work for the cluster row, the statements' Python side (SQLAlchemy's execution "
            "path for those not prepared), the write transaction's session, and rendering "
            "the response."
        )


# The issue's measurements before this work (requests per server CPU-second, one server,
# SQLite, 100 Ready 8-GPU clusters, read cache off).
BEFORE = {
    "healthz": 1_453,
    "get": 284,
    "list": 21,
    "create": 48,
    "trivial": 1_500,
    "trivial-fast": 2_540,
}


def _before_and_after(runs: dict[str, Runs], clusters: int) -> list[str]:
    healthz = runs["healthz"].per_core().median
    rows = [
        ("`/healthz`", "healthz", ""),
        ("GET one cluster, read cache off", "get", ""),
        (f"List of {clusters} clusters", "list", "per listed cluster"),
        ("Create an 8-GPU cluster", "create", ""),
        ("Trivial FastAPI app, h11 + asyncio", "trivial", ""),
        ("Trivial FastAPI app, httptools + uvloop", "trivial-fast", ""),
    ]
    lines = [
        "Before (the issue's measurement, the same setup) and after (this run), in requests "
        "per server CPU-second, CPU per request, and the ratio to `/healthz` of the same "
        "server:",
        "",
        "| Row | Before | After | CPU per request, before -> after | Ratio to `/healthz`, "
        "before -> after |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for label, key, per in rows:
        before, after = BEFORE[key], runs[key].per_core().median
        divide = clusters if per else 1
        cpu = f"{1000 / before / divide:.2f} -> {1000 / after / divide:.2f} ms" + (
            f" {per}" if per else ""
        )
        ratio = (
            f"{before / BEFORE['healthz']:.3f}x -> {after / healthz:.3f}x"
            if key not in ("healthz", "trivial", "trivial-fast")
            else "—"
        )
        lines.append(f"| {label} | {before:,} | {after:,.0f} | {cpu} | {ratio} |")
    return lines


def _ms_per_cluster(runs: Runs, clusters: int) -> float:
    return 1000 / runs.per_core().median / clusters


def _ms_per_cluster_of(figure: Figure, clusters: int) -> float:
    return 1000 / figure.value.median / clusters

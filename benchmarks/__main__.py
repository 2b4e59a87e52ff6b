"""Run the performance suite and write docs/performance.md.

    python -m benchmarks [--quick] [--output PATH]
                         [--only lists,throughput,bringup,placement,health,mix,restart]
                         [--no-postgres] [--workdir DIR]

`make bench` runs the whole suite (about 45 minutes on two cores); `--quick` runs every
benchmark end to end at toy sizes in well under a minute, to check the suite itself
works (tests/integration/test_benchmarks.py does, so it cannot rot). PostgreSQL figures
need Debian's server (`scripts/ensure-postgres.sh`); without it they are skipped and the
report says so. A run of some benchmarks only (`--only placement`) replaces just their
sections in an existing report and leaves the others as they were.
"""

from __future__ import annotations

import argparse
import glob
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from benchmarks import bringup, health, lists, mix, placement, report, restart, throughput
from benchmarks.load import LoadGenerator
from benchmarks.report import Section
from benchmarks.support import ROOT, LoadSampler, log, machine

CHANGES = """
### Issue 12, fifth round: the floor under a create, and what is left above it

Figure 2 now measures, in the same run, the least a create could cost
(`benchmarks/create_floor.py`): being a request at all (what `/healthz` costs the same
server), issuing and sealing its credentials (an EC CA and client pair, two certificates,
the kubeconfig), and its statements run by SQLite alone (the SQL of one real create as
SQLite traced it, replayed on a copy of the database in a rolled-back transaction, no
Python building it). In-process on this machine: credentials 0.86-0.95 ms, 34 statements
0.35-0.40 ms; with `/healthz` at about 0.18 ms the floor is about 1.45 ms, so with no code
of ours at all a create would reach about 0.12x `/healthz`. The target, 0.1x, leaves about
0.3 ms for validating, placing and answering it; it was set when `/healthz` cost 0.69 ms
(1,453 per CPU-second), and 0.1x of that is 6.9 ms, about what a create costs now.

```sh
python -m benchmarks.create_floor
python -m benchmarks.profile profile create --top 40
```

- **Create as a plain route**, like GET of a cluster: the same checks, caller, in-flight
  bound and body limit, without FastAPI's solving of its dependencies. The route
  FastAPI documents is kept for the OpenAPI schema.
- **The credentials are issued before the cluster row is written**, so the row is
  inserted once with them, not inserted and then updated (an UPDATE of the widest row,
  which also fired its revision trigger). The roster of a cluster's workers and the
  region's network are prepared statements.
- Python function calls per create (cProfile, 40 creates): 7,613 -> 6,587. Run side by
  side with the previous code on the two cores at once (this machine's speed wanders by
  20% from minute to minute, so alternating runs tell nothing), the in-process CPU per
  create is 8-12% lower.
- The benchmark servers now run with a credentials key, and the clusters they are seeded
  with store their keys and kubeconfig sealed for themselves, as a production server
  stores them (`clusterplane serve` always has a key): GET and the lists now pay for
  opening each kubeconfig, which they did not before. Opening one took 14 µs, 10 of them
  the standard library's base64 decoder; with pybase64's (SIMD, strict: a seal holding
  anything outside the alphabet is refused as unreadable) it takes about 4 µs. Side by
  side in-process: a list of 100 3.33 -> 2.36 ms, a GET 0.119 -> 0.110 ms.

### Issue 12, fourth round: a create's cost no longer grows with its region

The create of figure 2 costs more server CPU (13.0 ms in the last run) than the same
create in-process (8.7 ms). Creating 2,400 clusters in a row in-process, on the fleet of
figure 2 (4,096 hosts), showed why: the CPU per create grew with the clusters already
there, 7.2 ms for the first 400 and 15.7 ms for the last. Timing every statement of a
create beside 2,100 clusters (SQLAlchemy's cursor events and the prepared reads' own
runner), three statements of the capacity check read every live cluster of the region:
the sum of the steady bookings (2.7 ms), the other bookings (2.6 ms, a scan to leave the
steady ones out) and the reservations still to start by fabric (2.4 ms); the count of
serviceable hosts by fabric and pool read every host (0.6 ms). 9.2 ms of the 14.9 ms per
create were statements.

```sh
python -m benchmarks.profile cpu create
py-spy record -r 400 -f raw -o create.raw -- python -m benchmarks.profile loop create --seconds 15
python -m benchmarks.profile owners create.raw
```

- **Counts kept by the database.** Triggers append every change of a region's serviceable
  hosts (per GPU type, fabric and pool) and of its steady bookings' GPUs to two ledgers
  (migration 0018); the check sums a few rows and folds them into one per group once
  there are more than 64 (`services/capacity/capacity_ledger.py`). A ledger, not a counter
  row: on PostgreSQL a counter row updated in place was locked until each writer's commit,
  and creates, scales and deletes on two replicas deadlocked on it. The other bookings
  and the reservations to start are read from partial indexes holding only them.
- **After:** statements 0.85 ms per create beside 2,100 clusters (was 9.2), and the CPU
  per create flat at 5.7 ms from the first 400 creates to the last (2,400). A test counts
  SQLite's virtual-machine steps of a create beside 10 and beside 610 clusters: about
  2,300 and 2,200 now, 12,000 and 36,000 before (it fails on the old code).
- py-spy of the create after, by owner: the framework outside the project 19%, the ORM
  flushes at commit (`transaction` 12%) and before the reads (`reader_of` 12%), the
  in-flight bound's wrapping of the endpoint 9%, the cluster row's insert 8%, SQLite
  running the prepared statements 4% (was 32%), the credentials 7%.
- Cluster writes (create, update, delete) now run again in a new transaction when another
  writer got in the way (a deadlock between replicas, a busy database:
  `db.retry.write_retrying`); before, such a request was answered 500.
- **Delete -> gone of 16,384 GPUs: 3.87 s -> 0.71 s (SQLite, median, figure 3 of this
  run; 1,024 GPUs 0.27 -> 0.07 s).** cProfile of the deletion's passes in-process (a
  2,048-node cluster on instant simulated drivers): 4.7 s, of which `session.get` 4.0 s,
  called 4,100 times, each a query and an autoflush. The pass loaded the cluster's hosts
  in one query before handling its nodes, but the session holds its rows weakly and the
  result was thrown away, so every host was read again, and every node row too. Now the
  rows are kept for the pass, the node rows are loaded in chunks of 1,000, the SUCCEEDED
  phases go in the pass's executemany, and the nodes with waiting repairs are read once
  (not a remediation query per node): 1.27 s under cProfile. A test fails on a read of
  one node or host by its key during a deletion.
- **Refresher and writers on PostgreSQL.** The documents refresher stored a document and
  then marked its revision rendered; a write bumps the revision first (trigger) and then
  stores its response's document: the two deadlocked (seen in the replicas test's server
  log). The store now locks revisions first, then documents, in cluster-id order; a test
  sets up exactly that interleaving and fails on the old order.

### Issue 12, third round: the create request and the bring-up passes

The create request in-process (the ASGI app driven in a loop on the database of figure
2, controllers off), before (`c76af9c`) and after, and py-spy's samples of it grouped by
the project function they were spent in:

```sh
python -m benchmarks.profile cpu create
py-spy record -r 400 -f raw -o create.raw -- python -m benchmarks.profile loop create --seconds 20
python -m benchmarks.profile owners create.raw   # samples by the project function
```

- **Create: statements built and run through SQLAlchemy, not SQLite, were the cost.**
  Before: 13.9 ms of CPU per create. Grouped by owner, the largest shares were
  SQLAlchemy working for one statement each: the calendar's reads (`load_calendar` 6.9%,
  `_serviceable_hosts` 2.9%), `_reserved_fabrics` 5.8%, the GPU-type check
  (`supported_instance_types` 4.7%, a `SELECT DISTINCT` over every host of the region),
  the control-plane nodes through the ORM 4.3%, storing a document the next pass
  outdated (`store` 3.4%). Timed one by one, a select built on each call cost about
  0.5 ms of CPU for a statement SQLite answers in under 0.1 ms. After: the quota row,
  the GPU-type probe (an index probe that stops at the first host), the calendar's
  reads and pools, and the reserved fabrics are prepared statements on the session's
  connection (`db/prepared.py`); new nodes and their first phases are prepared
  executemany inserts (`PreparedInsert`); the control-plane nodes no longer go through
  the ORM; a create does not store its document (the refresher does once the cluster is
  quiet). 8.7 ms of CPU per create. SQLite executing prepared statements is now the
  largest owner (`Reader.run` 32%, nearly half of it the capacity check's count of the region's
  serviceable hosts, about 0.5 ms on 2,048 hosts), then the ORM flushes of the cluster
  row, its event and idempotency record (`reader_of`, `transaction` 16%), the
  credentials (`issue_cluster_credentials` and `build_kubeconfig` about 7%).
- **Bring-up of 16,384 GPUs: the passes' ORM rows and the simulated checks' seeding.**
  py-spy of the server from POST to Ready (three bring-ups, 200 Hz), shares of the
  controller's samples, before: the acceptance and NCCL checks 26% (mostly seeding a
  `random.Random` per check, 10,240 checks), node driver calls 15%, the snapshot loading
  2,051 ORM node rows about 15%, the apply's ORM flush of node updates and transitions
  12% (set off by an autoflush, the transition inserts with RETURNING), reloading the
  nodes as ORM rows 9%, building transition objects 5%. After: the snapshot and the
  apply read the live nodes as columns (`controllers/node_views.py`, one prepared
  statement); plain node changes are written set-based (one executemany UPDATE per set
  of changed columns, values equal to the stored ones left alone so triggers do not
  fire) and a pass's transitions in one executemany; simulated checks draw their
  figures from the digest they were seeded by. Pass 2 0.87 -> 0.39 s, pass 3 0.43 ->
  0.24 s on a quiet machine; what remains is the simulated checks (31%), SQLite fetching
  the snapshot (17%) and the node driver calls (11%). The bench's poller now reads in
  read-only transactions: polling inside `BEGIN IMMEDIATE` queued behind the next pass
  and added about 0.1 s to each bring-up.
- **Documents refresher on several replicas.** Each replica rendered the same quiet
  clusters; each now renders only those it takes a transaction-level advisory lock on
  (PostgreSQL), so a cluster is rendered once.

### Issue 12, second round: stored responses, and GET without a thread hop

Profiles of each path in-process (the ASGI app driven in a loop on the database of
figure 2, read cache off, controllers off), before (`2522452`) and after:

```sh
python -m benchmarks.profile cpu                    # CPU ms per request, every path
python -m benchmarks.profile profile get --top 40   # cProfile (the thread pool inlined)
```

- **GET: the statements were a third; the framework and the thread hop the rest.**
  Before: 1.105 ms of CPU per GET. In its cProfile, `_retrieve` took 46% (seven
  statements through `cluster_views.load_details`, SQLite executing and fetching 14%),
  FastAPI's `solve_dependencies` 20% (three solves per request: the app-wide checks, the
  caller, the path) and route matching 8%. What cProfile cannot see is the hand-off to a
  worker thread and back: running the same read inline cut the CPU per GET from 0.60 to
  0.22 ms, so the hop alone cost 0.38 ms, more than all the rest. After: each cluster's
  response is stored rendered (`services/clusters/cluster_documents.py`, kept current by
  database triggers on everything a response shows), so a GET is one statement; the GET
  route is a plain route running the same checks and caller lookup without dependency
  solving; and on SQLite that statement runs on the event loop's own read-only connection
  (`db/loop_reads.py`), never waiting for a lock. 0.178 ms per GET in-process (`/healthz`
  0.088 ms); in the cProfile the largest frames are now the middleware and the loop.
- **Lists: the cost was per row read, converted and presented.** Before: 17.97 ms of CPU
  for a list of 100 (33 rows a cluster: itself, four nodes, 28 phase transitions, each
  converted and presented). After: one row a cluster, its stored document and its
  kubeconfig (unsealed and added): 3.0 ms for 100.
- **Create is unchanged: 14 ms in-process.** Its cProfile has no frame above 6%: about 25
  statements through the ORM (execution set-up, cache keys, flush bookkeeping), the
  credentials (two certificates, EC and SSH keys) and the commit, each a few percent.
  Reaching 0.1x `/healthz` (about 1.8 ms) needs the create written as a few set-based
  statements and its credentials issued off the request path, which this round did not do.

- **Bring-up of 16,384 GPUs: seven passes, each reading per check and per node.** py-spy
  of the server from POST to Ready (`py-spy record -r 100 -f raw -p <server pid>`), before:
  the five acceptance checks per worker were 31% of the controllers' samples, half of it
  one fault read per check (10,240 reads); loading the 2,051 nodes as ORM rows twice a
  pass about 30%; full garbage collections about 0.1 s each, two or three a bring-up.
  After: the simulated faults are read once per pass (`simulation/faults.py`, reused while
  fleet time and the count of fault writes stand still); hosts in test phases are read
  as columns; a step that finishes at once lets the next start in the same pass
  (`lifecycle.phase_reached`), so an instant bring-up takes three passes, not six or
  seven; `clusterplane serve` freezes what start-up built out of the collector's way
  (`gc.freeze`). Controller samples fell from 848 to 413; what remains is the ORM (loading
  the nodes, flushing 2,048 node updates and their phase transitions) and the simulated
  checks' seeded draws.
- **A delete that landed during a pass waited 5 s.** The pass applied with the fresh row,
  saw the deletion, counted no progress (its snapshot was not deleting) and set the next
  pass `POLL` out; the bring-up figure's deletes right after Ready hit it every few reps.
  It is now acted on at the next pass.

### Issue 12, first round: where the CPU went, and what changed

Flame graphs of each hot path in-process (the application's ASGI interface driven in a
loop on the database of figure 2, read cache off), before (the tree at `7a15a0d`) and
after, sampled by py-spy; the shares are of the samples where a thread was working:

```sh
py-spy record -r 250 -o get.svg -- python -m benchmarks.profile loop get --seconds 12
py-spy record -r 250 -f raw -o get.raw -- python -m benchmarks.profile loop get --seconds 12
python -m benchmarks.profile top get.raw          # the busiest frames
# before: the old src/ with these benchmarks
mkdir -p /tmp/base && git archive 7a15a0d src | tar -x -C /tmp/base
PYTHONPATH=/tmp/base/src:. py-spy record -r 250 -f raw -o get-before.raw -- \\
    python -m benchmarks.profile loop get --seconds 12
```

- **Every request: FastAPI's routing.** Before, `/healthz` spent 40% of its samples
  matching routes (`_IncludedRouter._match` 17%, `_EffectiveRouteContext.matches` 12%,
  `APIRoute.matches` 8%): this FastAPI matches an included router by scanning its routes,
  twice, and `/healthz` came after twenty routers. Probes and clusters are now included
  first (no two routers match one path); the app-wide checks are one dependency, not two
  (each costs a dependency solve per request); request ids skip building a UUID object.
  After: `solve_dependencies` 7% is the largest frame; in-process, 11,398 -> 33,448
  `/healthz` in 12 s. Then `/healthz` became a plain route (it reads no parameters, so it
  skips the dependency solving API routes pay), still behind every middleware.
- **GET and lists: SQLAlchemy's execution path, not SQLite.** Before, a GET ran seven
  statements through `Connection.execute` (`do_execute` 6%, `_init_compiled`, the
  compiled-cache `LRUCache.get`, `Result` set-up), about 70 µs each beside SQLite's 30; a
  list's rows went through `Result.all` (18%) and the ORM-free presenters (`cluster` 9%).
  `db/prepared.py` now compiles each SELECT once per dialect and runs it on the DBAPI
  cursor, converting values with SQLAlchemy's own result processors in one generated
  expression per row, into named tuples (`services/clusters/cluster_views.py`), in one read
  transaction without an ORM session. After: SQLite itself (`Reader.run`, `Reader.all`:
  executing and fetching) is the largest share of GET (16%) and of a list (36%), then
  the per-row conversions (the generated `<lambda>`, 14%: text to datetimes, JSON,
  booleans). In-process: GET 5,396 -> 6,715 in 12 s, lists 241 -> 332.
- **Create: the capacity check scanned the region twice.** Before, a create counted the
  region's serviceable hosts twice (`_capacity`, `_largest_fabric`), from an index and the
  table, with a sort: 11 ms each on 12,500 hosts. Now once, from a covering index in its
  order (migration `0015_read_paths`, `ix_hosts_capacity`): 3 ms. SQLite and the ORM
  flush of the cluster's rows (`do_execute` 16%) remain the largest share.
- **Bring-up: the simulated driver read per worker.** A 16,384-GPU bring-up took 15-30 s
  (3.3 s before the driver contract's active checks): every acceptance check of every
  worker (five each: 10,240) opened an ORM read transaction to read the host's faults, and
  the verdicts loaded each worker's host with its own query. The faults are now one
  prepared statement outside a transaction, a repair of a host without faults opens no
  write transaction, and the verdicts load the hosts 500 at a time.
- **GIL hand-offs under mixed load.** A GET's steps on the event loop waited up to 5 ms
  (Python's switch interval) per hand-off behind a list or create in a worker thread;
  `clusterplane serve` now sets 1 ms, which cut GET's p99 under the mixed load 2.5 times.
- **The floor.** The server and the trivial app both run as they do by default (access
  lines at `info`), on the same machine in the same minutes. `/healthz` passes through
  the same middleware as every request (request id, access line, slots in flight) but
  not the API routes' dependency solving: the GET, list and create ratios are to the
  cheapest request this server answers.

### Earlier

What these benchmarks showed, and what was changed in `src/` because of it:

- **Lists read ORM objects.** The Together-compatible list has no pagination, and building
  ORM objects for 10,000 clusters, 42,500 nodes and their 290,000 phase transitions took
  most of 16 s (and a 911 MiB peak RSS) per list before; GET one cluster cost 9 ms of
  server CPU (110 requests per core-second against 900 for `/healthz`: 12%).
  `services/clusters/cluster_views.py` now reads plain column tuples (only the columns a response
  shows: no credentials, no driver state) on the session's
  connection, with statements built once at import (building a 30-column SELECT cost more
  than running it), seven queries per batch of 250 clusters whatever their size; the host
  facts come from a join, the latest remediations by cluster. JSON columns are parsed by
  orjson (`db/engine.py`).
- **The whole list was held in memory.** `GET /v1/compute/clusters` now streams a long
  list batch by batch from one read snapshot (a list of up to one batch is still one
  body), so the server's memory no longer grows with the list.
- **Every request re-authenticated.** Four queries and a transaction per request, in a
  thread hop of its own; `services/access/caller_cache.py` keeps a successfully authenticated key
  for 2 s (cleared by the admin endpoints that change keys and memberships) and the
  dependency answers hits on the event loop. The app-wide path check and the admin check
  are async too (no thread hop for pure checks).
- **GET one cluster.** Clients poll it while a cluster comes up. `api/read_cache.py` keeps
  the encoded answer until this server commits any write (`db/writes.py` counts committed
  write transactions) or 1 s passes (`ServerSettings.read_cache_seconds`; how late another
  replica's writes can show), and a hit is answered on the event loop.
- **Controllers waited 5 s after every step.** A pass that moved something (a node phase,
  a cluster phase, a termination) now looks again at once instead of after `POLL`: with
  instantaneous steps an 8-GPU cluster took 25.5 s from create to Ready before (five
  passes, 5 s apart; measured on this machine with the previous code) and now takes
  about 0.1 s. The new timing exposed a latent stall (found by simulation seed 116): a
  cluster scaled down to one worker while running the NCCL tests, which only run on
  several, waited forever for a successor phase; `lifecycle.phase_after` now moves it on.
- **Per-node queries in a controller pass.** The apply step read each node with its own
  query and asked "has this node run before?" once per node; both are one bulk query now,
  and a teardown loads the cluster's hosts in one query. Allocation read every free host
  as an ORM row and re-read each chosen one (`session.refresh` per host, and two O(n^2)
  loops); it now reads the topology columns only, and the chosen hosts in one query.
- **Idle controllers scanned every cluster.** SQLite's planner answered the due-row scan
  from the `deleted_at` index, reading and sorting every live cluster several times a
  second. Migration `0002` makes `ix_clusters_due` lead with `deleted_at`, so the scan
  reads only due rows, in order.
- **Placement read and regrouped every free host per decision.** On the 100,000-GPU fleet
  (1,250 free hosts at 90% occupancy) each create sorted and grouped all free hosts three
  times and read them from the database first. `domain/placement.py` now keeps the free
  hosts as a rack > block > fabric tree with free counts (racks bucketed by free count),
  so a decision costs about the size of its answer; `services/capacity/placement_cache.py` keeps
  one such index per region and GPU type between requests (rebuilt after 1 s, after a
  failed claim, and before any "no fit" answer; the conditional claim UPDATE stays the
  arbiter, so a stale index costs a retry, never a double allocation).
- **Lists on PostgreSQL paid per placeholder and per timestamp.** Each bulk query of a
  250-cluster batch carried 250 bound ids, which SQLAlchemy rendered and psycopg parsed
  again on every execution, and every phase-history timestamp was converted to an aware
  datetime only to be encoded. The bulk reads now pass the ids as one array
  (`= ANY(:ids)`) on PostgreSQL and read phase histories as the database's naive UTC,
  which orjson writes as UTC: a 2,000-cluster list went from 5.2 to 2.1 ms per cluster on
  this (loaded) machine, the same load for both.
- **Controller passes took a write transaction to find nothing.** Every pass of every
  controller scanned for due rows in a write transaction, then leased each row in another.
  A pass now asks a read-only probe first (most find nothing due), and finds and leases
  its due rows in one transaction (`SKIP LOCKED` on PostgreSQL). Forty simulation seeds
  went from 53 s to 46 s on two processes with this and two fewer reads per cluster pass.
- **Creates did not use the kept placement index, and a claim walked the free hosts.**
  Creates and scale-ups (`services/capacity/claims.py`) read every free host of the region and
  built an index per request, apart from the repair path's kept one; they now share one
  path (`allocation.reserve_general_hosts` and `claim_hosts`). SQLite's planner answered
  the claim `UPDATE ... WHERE id IN (...) AND cluster_id IS NULL` from the `cluster_id`
  index once more than a few ids were listed, walking every free host (5 ms instead of
  0.1 ms per claim); the claim now tests `coalesce(cluster_id, '') = ''`, which keeps the
  primary key, and a test reads the query plan. The hot statements are Core statements
  built once, node rows are written with two multi-row INSERTs instead of ORM objects,
  and the capacity pools are checked inside the claim instead of by a query before it.
  Committed placements went from 697 to about 1,100 per second per core, claims with
  their node rows from 127 to about 400.
- **Best fit across fabrics fragmented the fleet.** Taking the tightest rack of any
  fabric spread small clusters over all of them as their fill levels crossed, leaving
  5,312 GPUs placeable after the churn run (section 4). Fabrics are now filled in name
  order with best fit inside the chosen fabric (fullest block, then tightest rack).
- **A failure storm's reports were written one transaction each.** 125 XID 79 reports at
  once cost about 11 ms of server CPU each (7 ms of it ORM work: about 19 statements,
  three autoflushes and a commit per event), 1.4 s behind one GIL: p99 2.1 s. The health
  API now queues reports on a group commit (`db/group_commit.py`): one writer writes all
  that are waiting in one transaction, reading what the decisions need set-based
  (`services/health/health_reports.py`, `services/health/health_facts.py`), about 1.5 ms a
  report, and answers each after the commit; a failing batch is written again report by
  report.
  Concurrent requests with one key the caller cache does not hold share one lookup
  (`api/single_flight.py`) instead of 125 thread hops of four queries.
- **Start-up rewrote the fleet.** The fleet sync stamped `updated_at` on every host at
  every start and loaded them as ORM rows; it now compares plain columns, bulk-inserts new
  hosts and writes only the hosts that changed.
"""


ALL = ("lists", "throughput", "bringup", "placement", "health", "mix", "restart")


def _postgres_available() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


@contextmanager
def _postgres(enabled: bool) -> Iterator[Callable[[], str] | None]:
    if not enabled or not _postgres_available():
        if enabled:
            log("PostgreSQL is not installed (scripts/ensure-postgres.sh): skipping it")
        yield None
        return
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    try:
        yield server.new_database
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy sizes: a smoke run")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--only", default=",".join(ALL))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--pg-clusters",
        type=int,
        default=None,
        help="clusters in the big PostgreSQL list database (default: the issue's 100,000; "
        "30000 saves about 6 minutes)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args(argv)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = only - set(ALL)
    if unknown:
        parser.error(
            f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}; known: {', '.join(ALL)}"
        )
    started = time.perf_counter()
    info = machine()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cp-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sections: list[Section] = []
    load_tool = LoadGenerator().tool if "throughput" in only else "n/a"
    sampler = LoadSampler()
    try:
        with sampler, _postgres(not args.no_postgres) as postgres_url:
            if "lists" in only:
                plan = lists.QUICK if args.quick else lists.FULL
                if args.pg_clusters and plan.postgres:
                    n = args.pg_clusters
                    scale = replace(plan.postgres, clusters=n, nodes=n * 5 // 4)
                    plan = replace(plan, postgres=scale)
                sections += lists.run(plan, workdir / "lists", postgres_url)
            if "throughput" in only:
                tp = throughput.QUICK if args.quick else throughput.FULL
                sections += throughput.run(tp, workdir / "throughput")
            if "bringup" in only:
                bp = bringup.QUICK if args.quick else bringup.FULL
                sections += bringup.run(bp, workdir / "bringup", postgres_url)
            if "placement" in only:
                pp = placement.QUICK if args.quick else placement.FULL
                sections += placement.run(pp, workdir / "placement")
            if "health" in only:
                hp = health.QUICK if args.quick else health.FULL
                sections += health.run(hp, workdir / "health")
            if "mix" in only:
                mp = mix.QUICK if args.quick else mix.FULL
                sections += mix.run(mp, workdir / "mix")
            if "restart" in only:
                rp = restart.QUICK if args.quick else restart.FULL
                sections += restart.run(rp, workdir / "restart")
            if postgres_url is None and not args.no_postgres and only & {"lists", "bringup"}:
                sections.append(
                    Section(
                        "PostgreSQL",
                        "Not measured in this run: PostgreSQL is not installed here.",
                    )
                )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    info["load_at_end"] = machine()["load_at_start"]
    info["load_during"] = sampler.summary()
    command = "make bench" if not args.quick else "python -m benchmarks --quick"
    partial = not only >= set(ALL)
    if partial and args.output.exists():
        text = report.splice(
            args.output.read_text(),
            sections,
            machine=info,
            command=f"python -m benchmarks --only {','.join(sorted(only))}"
            + (" --quick" if args.quick else ""),
        )
        args.output.write_text(text)
        log(f"updated {len(sections)} sections of {args.output} in {elapsed / 60:.1f} minutes")
        return 0
    text = report.render(
        machine=info,
        sections=sections,
        quick=args.quick,
        wall_seconds=elapsed,
        command=command,
        load_tool=load_tool,
        changes=CHANGES,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    log(f"wrote {args.output} in {elapsed / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU per request of the hot paths, in-process, and their cProfile (docs/profiles.md).

The server's ASGI app is driven directly (no socket, no HTTP client), on a database seeded
as figure 2 seeds it (100 Ready clusters with 125 GPU workers in the project), with the
read cache off and the controllers not running. What is measured is the CPU time of the
calling thread and of the thread pool the sync endpoints run in (`time.process_time`), so
a busy machine changes the figures far less than it changes wall-clock rates.

    python -m benchmarks.profile cpu                    # CPU ms per request, every path
    python -m benchmarks.profile profile get --top 25   # cProfile of one path
    python -m benchmarks.profile loop get --seconds 12  # one path for 12 s, for a sampling
                                                        # profiler (below)
    python -m benchmarks.profile top get.raw            # the busiest frames of py-spy's
                                                        # raw output
    python -m benchmarks.profile owners get.raw         # the same samples by the project
                                                        # function they were spent in
    python -m benchmarks.profile stacks --rounds 5      # /healthz per server CPU-second,
                                                        # h11+asyncio vs httptools+uvloop

A flame graph of one path (py-spy is a dev dependency):

    py-spy record -r 250 -o get.svg -- python -m benchmarks.profile loop get --seconds 12
    py-spy record -r 250 -f raw -o get.raw -- python -m benchmarks.profile loop get

`stacks` is the one mode over real sockets: two server processes (`benchmarks.serve`) on
one database, one per uvicorn stack, driven in turn by the load generator of figure 2
(wrk where installed), round after round, so both see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson

from benchmarks.fleetgen import FleetShape, write_fleet
from benchmarks.load import LoadGenerator
from benchmarks.seed import CREATE_BODY, prepare_database, seed_requests_database
from benchmarks.support import CREDENTIALS_KEY, BenchServer
from clusterplane.app import build
from clusterplane.clock import ManualClock
from clusterplane.services.access.auth import generate_key_text
from clusterplane.settings import CredentialSettings, ServerSettings, Settings

LIST = "/v1/compute/clusters"
PATHS = ("healthz", "get", "list", "create")


@dataclass
class Reply:
    status: int
    body: bytes


class InProcess:
    """An application on a seeded database, called through its ASGI interface."""

    def __init__(self, workdir: Path, clusters: int = 100) -> None:
        url = f"sqlite:///{workdir}/profile.db"
        fleet = write_fleet(workdir / "fleet.yaml", FleetShape(fabrics=1))
        self.key = seed_requests_database(url, fleet, clusters, now=ManualClock().now())
        settings = Settings(
            database_url=url,
            fleet_file=fleet,
            admin_api_key=self.key,
            run_controllers=False,
            server=ServerSettings(read_cache_seconds=0, max_inflight_per_key=0),
            credentials=CredentialSettings(key=CREDENTIALS_KEY),
        )
        self.app = build(settings, clock=ManualClock())
        self.loop = asyncio.new_event_loop()
        self.create_body = orjson.dumps(CREATE_BODY)
        listed = orjson.loads(self.call("GET", LIST).body)["clusters"]
        self.cluster_id = listed[0]["cluster_id"]

    def call(self, method: str, path: str, body: bytes = b"") -> Reply:
        return self.loop.run_until_complete(self._call(method, path, body))

    async def _call(self, method: str, path: str, body: bytes) -> Reply:
        headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {self.key}".encode())]
        if body:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
            "state": {},
        }
        sent: list[dict[str, Any]] = []
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app.api(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return Reply(status, b"".join(m.get("body", b"") for m in sent if "body" in m))

    def request(self, name: str) -> Callable[[], Reply]:
        calls: dict[str, Callable[[], Reply]] = {
            "healthz": lambda: self.call("GET", "/healthz"),
            "get": lambda: self.call("GET", f"{LIST}/{self.cluster_id}"),
            "list": lambda: self.call("GET", LIST),
            "create": lambda: self.call("POST", LIST, self.create_body),
        }
        return calls[name]

    def close(self) -> None:
        self.loop.close()
        self.app.engine.dispose()


def cpu_ms(call: Callable[[], Reply], count: int, rounds: int) -> float:
    """Median over `rounds` of the process CPU milliseconds per call."""
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(count):
            reply = call()
            assert reply.status == 200, reply
        samples.append((time.process_time() - start) * 1000 / count)
    return statistics.median(samples)


def inline_thread_pool() -> None:
    """Run what FastAPI hands to its thread pool (sync endpoints and dependencies) in the
    calling thread instead, so a profile of that thread shows it."""

    async def run_sync(func: Callable[..., Any], *args: Any, **_: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]


COUNTS = {"healthz": 2000, "get": 300, "list": 10, "create": 40}


STACKS = {
    "h11 + asyncio": ("--http", "h11", "--loop", "asyncio"),
    "httptools + uvloop": ("--http", "httptools", "--loop", "uvloop"),
}


def compare_stacks(workdir: Path, rounds: int, seconds: float) -> None:
    url = f"sqlite:///{workdir}/stacks.db"
    key = generate_key_text()
    fleet = write_fleet(workdir / "fleet.yaml", FleetShape(1, blocks=1, racks=2, hosts_per_rack=8))
    prepare_database(url, fleet, key)
    load = LoadGenerator()
    per_core: dict[str, list[float]] = {name: [] for name in STACKS}
    servers = {
        name: BenchServer(
            workdir,
            database_url=url,
            fleet=fleet,
            api_key=key,
            controllers=False,
            name=f"stack-{index}",
            extra_args=args,
        )
        for index, (name, args) in enumerate(STACKS.items())
    }
    try:
        for server in servers.values():
            server.start()
            load.run(server, "/healthz", seconds=1, connections=4)  # warm
        for round_ in range(rounds):
            for name, server in servers.items():
                result = load.run(server, "/healthz", seconds=seconds, connections=4)
                per_core[name].append(result.rps_per_core)
                print(f"round {round_ + 1} {name:20} {result.rps_per_core:8.0f} per CPU-s")
    finally:
        for server in servers.values():
            server.stop()
    print(f"load: {load.tool}, 4 connections, {seconds:g} s per stack per round")
    for name, values in per_core.items():
        print(f"{name:20} median {statistics.median(values):8.0f} requests per CPU-second")


# Frames where a sampled thread waits rather than works, and the set-up of `loop`.
IDLE_FRAMES = ("Condition.wait", "EpollSelector.select", "Event.wait", "Queue.get")
SET_UP_FRAMES = ("InProcess.__init__", "InProcess.close", "_find_and_load")


def _busy_samples(raw: Path) -> Iterator[tuple[list[str], int]]:
    """(frames, count) of each stack of py-spy's `--format raw` output where a thread was
    working (idle waits and the set-up left out)."""
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        frames = stack.split(";")
        if frames[-1].startswith(IDLE_FRAMES) or any(f in stack for f in SET_UP_FRAMES):
            continue
        yield frames, int(number)


def top_frames(raw: Path, count: int) -> list[tuple[str, float]]:
    """The functions most often on top of the busy samples, with their share of them."""
    seen: dict[str, int] = {}
    for frames, number in _busy_samples(raw):
        name = frames[-1].split(" (")[0] or "(native)"
        seen[name] = seen.get(name, 0) + number
    total = sum(seen.values())
    ranked = sorted(seen.items(), key=lambda item: -item[1])[:count]
    return [(name, hits / total) for name, hits in ranked]


def owners(raw: Path, count: int) -> list[tuple[str, str, float]]:
    """The project functions whose calls the busy samples were in: each sample goes to
    the innermost frame of `src/clusterplane`, split by where its top frame runs
    (SQLAlchemy, cryptography or elsewhere), so the cost of a statement built and run
    through SQLAlchemy shows at the function that ran it."""
    seen: dict[tuple[str, str], int] = {}
    for frames, number in _busy_samples(raw):
        ours = [f for f in frames if "clusterplane/" in f]
        owner = _frame_name(ours[-1]) if ours else "(outside the project)"
        leaf = next((lib for lib in ("sqlalchemy", "cryptography") if lib in frames[-1]), "")
        seen[(owner, leaf)] = seen.get((owner, leaf), 0) + number
    total = sum(seen.values())
    ranked = sorted(seen.items(), key=lambda item: -item[1])[:count]
    return [(owner, leaf, hits / total) for (owner, leaf), hits in ranked]


def _frame_name(frame: str) -> str:
    """`function (path/to/module.py:line)` -> `function (module path)`."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split('clusterplane/')[-1].split(':')[0]})"


def loop(name: str, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = InProcess(Path(tmp))
        try:
            call = server.request(name)
            call()
            done = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                call()
                done += 1
            print(f"{name}: {done} requests in {seconds:g} s")
        finally:
            server.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("mode", choices=("cpu", "profile", "loop", "top", "owners", "stacks"))
    parser.add_argument("path", nargs="?", help=f"one of {', '.join(PATHS)} (top, owners: a file)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path, help="also write the raw profile here")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="stacks: per stack per round; loop: in all"
    )
    args = parser.parse_args()
    if args.mode == "top":
        for frame, share in top_frames(Path(args.path), args.top):
            print(f"{share:6.1%}  {frame}")
        return
    if args.mode == "owners":
        for owner, leaf, share in owners(Path(args.path), args.top):
            print(f"{share:6.1%}  {leaf or '-':12}  {owner}")
        return
    if args.path is not None and args.path not in PATHS:
        parser.error(f"path: one of {', '.join(PATHS)}")
    if args.mode == "loop":
        loop(args.path or "get", args.seconds)
        return
    if args.mode == "stacks":
        with tempfile.TemporaryDirectory() as tmp:
            compare_stacks(Path(tmp), args.rounds, args.seconds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = InProcess(Path(tmp))
        try:
            for name in PATHS:
                server.request(name)()  # warm: statement caches, imports, first connection
            if args.mode == "cpu":
                for name in [args.path] if args.path else PATHS:
                    ms = cpu_ms(server.request(name), COUNTS[name], args.rounds)
                    print(f"{name:8} {ms:8.3f} ms CPU per request")
            else:
                name = args.path or "get"
                inline_thread_pool()  # cProfile sees only the thread it runs in
                profiler = cProfile.Profile()
                call = server.request(name)
                profiler.enable()
                for _ in range(COUNTS[name]):
                    call()
                profiler.disable()
                if args.save:
                    profiler.dump_stats(args.save)
                stats = pstats.Stats(profiler).strip_dirs()
                print(f"# {name}: {COUNTS[name]} requests")
                stats.sort_stats("cumulative").print_stats(args.top)
                stats.sort_stats("tottime").print_stats(args.top)
        finally:
            server.close()


if __name__ == "__main__":
    main()

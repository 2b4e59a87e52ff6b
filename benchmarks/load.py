"""Load generation against a server: `wrk` (installed from Debian when missing) or, where
it cannot be had, threaded keep-alive clients in the benchmark's own process.

One run drives one path for a fixed time with a fixed number of connections and returns
requests per second, latency percentiles and the server's CPU seconds over the run, so
throughput can be quoted per core of the server, whatever else shares the machine.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from benchmarks.support import log, percentile

WRK_LUA = """
wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
"""
# Several paths: each request takes one at random.
WRK_PATHS_LUA = """
local paths = {{{paths}}}
math.randomseed({seed})
request = function()
  return wrk.format(nil, paths[math.random(#paths)])
end
"""


@dataclass(frozen=True)
class Drive:
    """One kind of request of a mixed load: `connections` clients sending it back to back,
    each request to one of `paths` (drawn at random), with `body` (a POST) or without."""

    name: str
    paths: tuple[str, ...]
    connections: int
    body: str | None = None
    rate: float = 0.0  # requests per second per client when paced (`LoadGenerator.paced`)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rps_per_core(self) -> float:
        """Requests per CPU-second of the server process (its cores, not the machine's)."""
        return self.requests / self.server_cpu_s if self.server_cpu_s else 0.0


def ensure_wrk() -> str | None:
    """The path of `wrk`, installing Debian's package when missing and allowed."""
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_INSTALL"):
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (apt-get install wrk)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for args in (
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
        ):
            done = subprocess.run(args, env=env, capture_output=True, check=False)
            if args[1] == "install" and done.returncode == 0:
                break
    return shutil.which("wrk")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if match is None:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _wrk_script(server: Target, drive: Drive, seed: int) -> str:
    method = "POST" if drive.body is not None else "GET"
    text = WRK_LUA.format(method=method, key=server.api_key, body=drive.body or "")
    if len(drive.paths) > 1:
        quoted = ",".join(f'"{p}"' for p in drive.paths)
        text += WRK_PATHS_LUA.format(paths=quoted, seed=seed)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(text)
    return script.name


def _wrk_command(wrk: str, server: Target, drive: Drive, seconds: float, script: str) -> list[str]:
    return [
        *(wrk, "-t1", f"-c{drive.connections}", f"-d{max(1, round(seconds))}s"),
        *("--timeout", "30s", "--latency", "-s", script, server.base_url + drive.paths[0]),
    ]


def _parse_wrk(out: str, cpu: float) -> LoadResult:
    total = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", out)
    if total is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return LoadResult(
        requests=int(total.group(1)),
        seconds=_ms(total.group(2) + total.group(3)) / 1000,
        errors=(int(errors.group(1)) if errors else 0)
        + (sum(int(x) for x in socket_errors.groups()) if socket_errors else 0),
        p50_ms=_ms(p50.group(1)) if p50 else float("nan"),
        p99_ms=_ms(p99.group(1)) if p99 else float("nan"),
        server_cpu_s=cpu,
    )


def _run_wrk(
    wrk: str, server: Target, drives: list[Drive], seconds: float
) -> dict[str, LoadResult]:
    """One wrk process per drive, all at once; the server CPU is over all of them."""
    scripts = [_wrk_script(server, d, seed=n + 1) for n, d in enumerate(drives)]
    try:
        cpu0 = server.cpu_seconds()
        processes = [
            subprocess.Popen(
                _wrk_command(wrk, server, d, seconds, script),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for d, script in zip(drives, scripts, strict=True)
        ]
        outputs = [p.communicate() for p in processes]
        cpu = server.cpu_seconds() - cpu0
    finally:
        for script in scripts:
            Path(script).unlink(missing_ok=True)
    for process, (_, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"wrk failed: {err}")
    return {d.name: _parse_wrk(out, cpu) for d, (out, _) in zip(drives, outputs, strict=True)}


def _run_python(server: Target, drives: list[Drive], seconds: float) -> dict[str, LoadResult]:
    """The connections of every drive as keep-alive clients on threads of this process (not
    the server's), all at once."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {d.name: [] for d in drives}
    errors = dict.fromkeys(latencies, 0)

    def loop(drive: Drive, seed: int) -> None:
        mine: list[float] = []
        bad = 0
        rng = random.Random(seed)
        with httpx.Client(base_url=server.base_url, headers=server.headers()) as http:
            while time.monotonic() < deadline:
                path = rng.choice(drive.paths)
                start = time.perf_counter()
                if drive.body:
                    r = http.post(
                        path, content=drive.body, headers={"Content-Type": "application/json"}
                    )
                else:
                    r = http.get(path)
                mine.append((time.perf_counter() - start) * 1000)
                bad += r.status_code >= 400
        with lock:
            latencies[drive.name].extend(mine)
            errors[drive.name] += bad

    cpu0 = server.cpu_seconds()
    started = time.monotonic()
    pool = [
        threading.Thread(target=loop, args=(d, n * 1000 + c))
        for n, d in enumerate(drives)
        for c in range(d.connections)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu0
    return {
        name: LoadResult(
            requests=len(values),
            seconds=elapsed,
            errors=errors[name],
            p50_ms=percentile(values, 50),
            p99_ms=percentile(values, 99),
            server_cpu_s=cpu,
        )
        for name, values in latencies.items()
    }


async def _paced_client(
    http: httpx.AsyncClient, drive: Drive, rng: random.Random, start: float, end: float
) -> tuple[list[float], int]:
    """One client on its own connection, sending at `drive.rate` on a fixed schedule; a
    request's latency counts from its scheduled time, so a server that falls behind is
    charged for the wait too (no coordinated omission)."""
    interval = 1.0 / drive.rate
    latencies: list[float] = []
    errors = 0
    due = start + rng.uniform(0, interval)
    while due < end:
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        path = rng.choice(drive.paths)
        if drive.body is None:
            response = await http.get(path)
        else:
            response = await http.post(path, content=drive.body)
        latencies.append((time.monotonic() - due) * 1000)
        errors += response.status_code >= 400
        due += interval
    return latencies, errors


async def _run_paced(
    server: Target, drives: list[Drive], seconds: float
) -> dict[str, tuple[list[float], int]]:
    """Every client is made and connected (a `/healthz` each) before the schedule starts,
    so the clients' own start-up is not charged to the server."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    headers = {**server.headers(), "Content-Type": "application/json"}
    clients = [
        (
            d,
            c,
            httpx.AsyncClient(base_url=server.base_url, headers=headers, limits=limits, timeout=60),
        )
        for d in drives
        for c in range(d.connections)
    ]
    try:
        await asyncio.gather(*(http.get("/healthz") for _, _, http in clients))
        start = time.monotonic() + 0.5
        end = start + seconds
        runs = await asyncio.gather(
            *(
                _paced_client(http, d, random.Random(n * 1000 + c), start, end)
                for n, (d, c, http) in enumerate(clients)
            )
        )
    finally:
        await asyncio.gather(*(http.aclose() for _, _, http in clients))
    results: dict[str, tuple[list[float], int]] = {d.name: ([], 0) for d in drives}
    for (d, _, _), (latencies, errors) in zip(clients, runs, strict=True):
        merged, bad = results[d.name]
        results[d.name] = (merged + latencies, bad + errors)
    return results


class Target(Protocol):
    """A server process to drive (`support.BenchServer` and its kin)."""

    api_key: str

    @property
    def base_url(self) -> str: ...

    def headers(self) -> dict[str, str]: ...

    def cpu_seconds(self) -> float: ...


class LoadGenerator:
    def __init__(self) -> None:
        # BENCH_LOAD=python forces the fallback (the test of the suite runs it that way).
        self.wrk = None if os.environ.get("BENCH_LOAD") == "python" else ensure_wrk()
        self.tool = "wrk" if self.wrk else "python (httpx keep-alive clients on threads)"

    def run(
        self,
        server: Target,
        path: str,
        *,
        seconds: float,
        connections: int = 4,
        body: str | None = None,
    ) -> LoadResult:
        """One path, `connections` clients, for `seconds`."""
        drive = Drive("run", (path,), connections, body)
        return self.mix(server, [drive], seconds=seconds)["run"]

    def paced(
        self, server: Target, drives: list[Drive], *, seconds: float
    ) -> dict[str, LoadResult]:
        """Every drive at once for `seconds`, each client at its drive's `rate` (an open
        loop: the offered load does not drop when the server slows down). Asyncio clients
        in this process, whatever the load tool."""
        cpu0 = server.cpu_seconds()
        started = time.monotonic()
        raw = asyncio.run(_run_paced(server, drives, seconds))
        elapsed = time.monotonic() - started
        cpu = server.cpu_seconds() - cpu0
        return {
            name: LoadResult(
                requests=len(latencies),
                seconds=elapsed,
                errors=errors,
                p50_ms=percentile(latencies, 50),
                p99_ms=percentile(latencies, 99),
                server_cpu_s=cpu,
            )
            for name, (latencies, errors) in raw.items()
        }

    def mix(self, server: Target, drives: list[Drive], *, seconds: float) -> dict[str, LoadResult]:
        """Every drive at once for `seconds`: a result per drive (the server CPU is the
        whole mix's in each)."""
        if self.wrk:
            return _run_wrk(self.wrk, server, drives, seconds)
        return _run_python(server, drives, seconds)

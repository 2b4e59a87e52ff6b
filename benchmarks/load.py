"""Load generation against a server: `wrk` (installed from Debian when missing) or, where
it cannot be had, threaded keep-alive clients in the benchmark's own process.

One run drives one path for a fixed time with a fixed number of connections and returns
requests per second, latency percentiles and the server's CPU seconds over the run, so
throughput can be quoted per core of the server, whatever else shares the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.support import BenchServer, log, percentile

WRK_LUA = """
wrk.method = "{method}"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{body}]]
"""


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


def _run_wrk(
    wrk: str, server: BenchServer, path: str, seconds: float, connections: int, body: str | None
) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            WRK_LUA.format(
                method="POST" if body is not None else "GET", key=server.api_key, body=body or ""
            )
        )
    try:
        cpu0 = server.cpu_seconds()
        done = subprocess.run(
            [
                wrk,
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "--latency",
                "-s",
                script.name,
                server.base_url + path,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        cpu = server.cpu_seconds() - cpu0
    finally:
        Path(script.name).unlink(missing_ok=True)
    out = done.stdout
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


def _run_python(
    server: BenchServer, path: str, seconds: float, connections: int, body: str | None
) -> LoadResult:
    """`connections` keep-alive clients on threads of this process (not the server's)."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]

    def loop() -> None:
        mine: list[float] = []
        bad = 0
        with httpx.Client(base_url=server.base_url, headers=server.headers()) as http:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                if body:
                    r = http.post(path, content=body, headers={"Content-Type": "application/json"})
                else:
                    r = http.get(path)
                mine.append((time.perf_counter() - start) * 1000)
                bad += r.status_code >= 400
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    cpu0 = server.cpu_seconds()
    started = time.monotonic()
    pool = [threading.Thread(target=loop) for _ in range(connections)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        errors=errors[0],
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        server_cpu_s=server.cpu_seconds() - cpu0,
    )


class LoadGenerator:
    def __init__(self) -> None:
        # BENCH_LOAD=python forces the fallback (the test of the suite runs it that way).
        self.wrk = None if os.environ.get("BENCH_LOAD") == "python" else ensure_wrk()
        self.tool = "wrk" if self.wrk else "python (httpx keep-alive clients on threads)"

    def run(
        self,
        server: BenchServer,
        path: str,
        *,
        seconds: float,
        connections: int = 4,
        body: str | None = None,
    ) -> LoadResult:
        if self.wrk:
            return _run_wrk(self.wrk, server, path, seconds, connections, body)
        return _run_python(server, path, seconds, connections, body)

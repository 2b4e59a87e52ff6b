"""What every benchmark shares: statistics, the machine, a real server process, its memory.

`BenchServer` starts `python -m benchmarks.serve` (uvicorn, one worker) on a free port and
reads its peak resident memory (`VmHWM` in /proc/<pid>/status) and CPU time
(/proc/<pid>/stat) while it runs, so the figures are about the server process alone and
not the load generator beside it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from clusterplane.services.access.auth import generate_key_text

ROOT = Path(__file__).resolve().parents[1]
# Servers seal their clusters' keys and kubeconfigs, as `clusterplane serve` always does.
CREDENTIALS_KEY = "benchmark-credentials-key-not-a-secret"


# --- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100), nearest-rank on sorted values (p99 of < 100 = max)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[min(len(ordered), int(rank)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Samples:
    """Repeated measurements of one quantity (seconds, requests/s, ...)."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return median(self.values)

    @property
    def p99(self) -> float:
        return percentile(self.values, 99)

    def __len__(self) -> int:
        return len(self.values)


# --- the machine ----------------------------------------------------------------------


def machine() -> dict[str, str]:
    model, cores = "unknown", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("processor"):
                cores += 1
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cpu": model,
        "cores": str(cores or os.cpu_count() or 0),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_at_start": load,
    }


class LoadSampler:
    """The machine's 1-minute load average, sampled every `every` seconds on a thread,
    while open: how busy the shared machine was during a run."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.samples.append(float(Path("/proc/loadavg").read_text().split()[0]))
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        return (
            f"median {median(self.samples):.1f}, min {min(self.samples):.1f}, "
            f"max {max(self.samples):.1f} ({len(self.samples)} samples)"
        )


# --- processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), in KiB; 0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class BenchServer:
    """One server process (uvicorn, one worker) on `database_url` and `fleet`."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str,
        fleet: Path,
        api_key: str | None = None,
        duration_factor: float = 1.0,
        controllers: bool = True,
        poll_interval: float = 0.1,
        read_cache_seconds: float | None = None,
        name: str = "server",
        extra_args: tuple[str, ...] = (),
    ):
        self.workdir = workdir
        self.database_url = database_url
        self.fleet = fleet
        self.api_key = api_key or generate_key_text()
        self.duration_factor = duration_factor
        self.controllers = controllers
        self.poll_interval = poll_interval
        self.read_cache_seconds = read_cache_seconds
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"
        self.extra_args = extra_args

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "benchmarks.serve",
            "--port",
            str(self.port),
            "--database-url",
            self.database_url,
            "--fleet",
            str(self.fleet),
            "--duration-factor",
            str(self.duration_factor),
            "--poll-interval",
            str(self.poll_interval),
        ]
        if not self.controllers:
            args.append("--no-controllers")
        if self.read_cache_seconds is not None:
            args += ["--read-cache-seconds", str(self.read_cache_seconds)]
        return args + list(self.extra_args)

    def start(self, timeout: float = 300.0) -> BenchServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = self.command()
        env = dict(os.environ, CLUSTERPLANE_ADMIN_API_KEY=self.api_key)
        env["CLUSTERPLANE_CREDENTIALS_KEY"] = CREDENTIALS_KEY  # the key `seed` seals with
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def rss_mib(self) -> float:
        return proc_status_kib(self.pid, "VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        return proc_status_kib(self.pid, "VmHWM") / 1024

    def reset_peak_rss(self) -> bool:
        """Start the peak (`VmHWM`) over from the current RSS (Linux's `clear_refs`), so a
        later peak is that of what ran since; False where the kernel does not allow it."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def client(self, timeout: float = 300.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers(), timeout=timeout)

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class TrivialServer(BenchServer):
    """The trivial FastAPI app of `benchmarks.trivial` (no database) on one uvicorn stack:
    `http` and `loop` as uvicorn names them (`h11`/`asyncio` are its defaults without the
    `[standard]` extras)."""

    def __init__(self, workdir: Path, *, http: str, loop: str, name: str):
        super().__init__(workdir, database_url="", fleet=Path(), name=name)
        self.http = http
        self.loop = loop

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "benchmarks.trivial", "--port", str(self.port)),
            *("--http", self.http, "--loop", self.loop),
        ]


def timed_get(client: httpx.Client, path: str, **kwargs: Any) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    response = client.get(path, **kwargs)
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed, response


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

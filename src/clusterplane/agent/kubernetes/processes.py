"""Long-running processes the Kubernetes runtime starts on its host, and their records.

`start(host, argv, log, env)` runs `argv` detached on the host (its own session, output to
`log`, stdin closed) and returns a `Proc`: its pid and the kernel's start time of that
pid, so a recycled pid never passes for the daemon (`alive`). `stop(host, procs)` sends
SIGTERM, waits, then SIGKILL; a zombie (PID 1 reaps lazily) counts as gone. `find(host,
needle)` lists the host's processes whose command line contains `needle` (containerd's
shims, found by their containerd's unique socket path). The host is the same abstraction
the Slurm runtime uses (`agent.slurm.host.SlurmHost`: paths, commands, process ids).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusterplane.agent.slurm.host import SlurmHost as Host

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# `setsid` is not a group leader in a non-interactive shell's background job, so it
# execs without forking and `$!` is the daemon itself.
_DETACH = 'log=$1; shift; setsid "$@" >>"$log" 2>&1 </dev/null & echo $!'


class ProcessError(RuntimeError):
    """A process did not start or did not stop."""


@dataclass(frozen=True)
class Proc:
    pid: int
    started: str  # field 22 of /proc/<pid>/stat, in clock ticks since boot

    def as_record(self) -> dict[str, Any]:
        return {"pid": self.pid, "started": self.started}

    @staticmethod
    def from_record(record: object) -> Proc | None:
        if isinstance(record, dict) and isinstance(record.get("pid"), int):
            return Proc(record["pid"], str(record.get("started", "")))
        return None


def start(host: Host, argv: Sequence[str], log: str, env: Mapping[str, str]) -> Proc:
    try:
        result = host.run(["sh", "-c", _DETACH, "sh", log, *argv], timeout=START_TIMEOUT, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ProcessError(f"{argv[0]} did not start in time") from exc
    pid = result.stdout.strip()
    if result.returncode or not pid.isdigit():
        raise ProcessError(f"{argv[0]} did not start: {result.stderr.strip()[-500:]}")
    started = _started(host, int(pid))
    if started is None:
        raise ProcessError(f"{argv[0]} exited at once; see {log}")
    return Proc(int(pid), started)


def alive(host: Host, proc: Proc | None) -> bool:
    return proc is not None and _started(host, proc.pid) == proc.started


def stop(host: Host, procs: Iterable[Proc], what: str) -> None:
    live = [proc for proc in procs if alive(host, proc)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        live = [proc for proc in live if alive(host, proc)]
        if not live:
            return
        host.run(["kill", f"-{sig.value}", *(str(proc.pid) for proc in live)], timeout=10)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(alive(host, proc) for proc in live) and time.monotonic() < deadline:
            time.sleep(0.05)
    if any(alive(host, proc) for proc in live):
        raise ProcessError(f"{what} did not stop")


def existing(host: Host, pids: Iterable[int]) -> list[Proc]:
    """The live ones among `pids`, as `Proc`s."""
    found = ((pid, _started(host, pid)) for pid in pids)
    return [Proc(pid, started) for pid, started in found if started is not None]


def find(host: Host, needle: str) -> list[Proc]:
    found = []
    for pid in host.processes():
        try:
            cmdline = host.path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        started = _started(host, pid)
        if needle.encode() in cmdline and started is not None:
            found.append(Proc(pid, started))
    return found


def _started(host: Host, pid: int) -> str | None:
    """The start time of a live `pid`; None when there is none (or only a zombie)."""
    try:
        stat = host.path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]

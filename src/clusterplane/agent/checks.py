"""Active checks the server asks this host to run, with the commands the operator set.

The server hands out check requests in its answer to each status report
(`StatusAnswer.checks`) until they are reported. `CheckRunner` runs them one at a time
on its own thread (two diagnostics at once would spoil each other's figures), each with
the command `[checks.<kind>]` of the agent config names (`{level}`, `{kind}` and
`{run_id}` filled in), in a process group of its own that is killed after its timeout.

    exit 0, a JSON object on stdout (all of it, or its last line that is one)  -> ok, figures
    no command for the kind, cannot start, timeout, non-zero exit, no JSON      -> failed, why

A failed check keeps the figures it printed, as evidence. Reports wait in `checks.json`
until the server took them, so a restart neither loses nor re-runs a finished check; the
run ids finished recently are kept too, so a request seen again before its report landed
is not run twice. A report the server refuses as malformed is replaced by a failed one
saying so; one it does not know (404) is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from clusterplane.domain.agent_protocol import CheckReport, CheckRequest

from .client import ServerRefused
from .config import CheckCommand
from .identity import read_json, write_json

log = logging.getLogger(__name__)
FILE = "checks.json"
REMEMBERED = 256  # finished run ids kept, so a late repeat of a request is not run again
OUTPUT_LIMIT = 64 * 1024  # bytes of output looked at for figures and messages
FIGURES_LIMIT = 32 * 1024  # bytes of JSON figures sent; more fails the check
MALFORMED = (400, 413, 422)


def _figures(stdout: str) -> dict[str, Any] | None:
    """The JSON object the command printed: its whole output or its last such line."""
    candidates = [stdout.strip(), *reversed(stdout.strip().splitlines())]
    for text in candidates:
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _tail(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def _argv(command: CheckCommand, request: CheckRequest) -> list[str]:
    values = {
        "kind": request.kind,
        "level": "" if request.level is None else str(request.level),
        "run_id": request.run_id,
    }
    return [arg.format_map(values) for arg in command.command]


def run_check(
    commands: dict[str, CheckCommand],
    request: CheckRequest,
    started: Callable[[subprocess.Popen[str]], None] = lambda proc: None,
) -> CheckReport:
    """Run one check to its end; never raises for anything the command does."""

    def failed(message: str, figures: dict[str, Any] | None = None) -> CheckReport:
        return _report(request.run_id, False, message, figures or {})

    command = commands.get(request.kind)
    if command is None:
        return failed(
            f"this host has no command for {request.kind} checks "
            f"([checks.{request.kind}] in the agent config)"
        )
    env = {
        **os.environ,
        "CLUSTERPLANE_CHECK_KIND": request.kind,
        "CLUSTERPLANE_CHECK_LEVEL": "" if request.level is None else str(request.level),
        "CLUSTERPLANE_CHECK_RUN_ID": request.run_id,
    }
    try:
        proc = subprocess.Popen(
            _argv(command, request),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
            process_group=0,
        )
    except OSError as exc:
        return failed(f"{request.kind}: cannot start {command.command[0]}: {exc}")
    started(proc)
    try:
        stdout, stderr = proc.communicate(timeout=command.timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return failed(f"{request.kind} did not finish within {command.timeout_seconds:g} s")
    stdout, stderr = stdout[-OUTPUT_LIMIT:], stderr[-OUTPUT_LIMIT:]
    figures = _figures(stdout)
    if figures is not None and len(json.dumps(figures)) > FIGURES_LIMIT:
        return failed(f"{request.kind} printed more than {FIGURES_LIMIT} bytes of figures")
    if proc.returncode != 0:
        why = _tail(stderr) or _tail(stdout) or "no output"
        return failed(f"{request.kind} exited {proc.returncode}: {why}", figures)
    if figures is None:
        return failed(f"{request.kind} printed no JSON object of figures: {_tail(stdout)}")
    return _report(request.run_id, True, "", figures)


def _report(run_id: str, ok: bool, message: str, figures: dict[str, Any]) -> CheckReport:
    """The report, or a failed one when the figures are more than the protocol carries."""
    try:
        return CheckReport(run_id=run_id, ok=ok, message=message[:2000], figures=figures)
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        return CheckReport(run_id=run_id, ok=False, message=f"unusable figures: {why}"[:2000])


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # something that left the group holds its output open
        proc.wait()


class CheckRunner:
    def __init__(
        self,
        state_dir: Path,
        commands: dict[str, CheckCommand],
        send: Callable[[CheckReport], None],
    ):
        self.path = state_dir / FILE
        self.commands = commands
        self.send = send
        saved = read_json(self.path) or {}
        self.unsent: dict[str, CheckReport] = {
            run_id: CheckReport.model_validate(doc)
            for run_id, doc in (saved.get("unsent") or {}).items()
        }
        self.finished: deque[str] = deque(saved.get("finished") or [], maxlen=REMEMBERED)
        self.queue: deque[CheckRequest] = deque()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.running: subprocess.Popen[str] | None = None

    def _save(self) -> None:
        write_json(
            self.path,
            {
                "unsent": {k: v.model_dump(mode="json") for k, v in self.unsent.items()},
                "finished": list(self.finished),
            },
        )

    def submit(self, requests: list[CheckRequest]) -> None:
        """Queue the requests not queued, running, finished or waiting to be sent."""
        fresh: list[CheckRequest] = []
        with self.lock:
            known = {r.run_id for r in self.queue} | set(self.finished) | set(self.unsent)
            for request in requests:
                if request.run_id not in known:
                    known.add(request.run_id)
                    fresh.append(request)
            self.queue.extend(fresh)
        if fresh:
            self.wake.set()

    def step(self) -> bool:
        """Send what waits, then run the next queued check; False when none was queued."""
        self.flush()
        with self.lock:
            request = self.queue[0] if self.queue else None
        if request is None:
            return False
        report = run_check(self.commands, request, started=self._started)
        self.running = None
        log.info("check %s (%s): %s", request.run_id, request.kind, report.ok)
        with self.lock:
            self.queue.popleft()
            self.finished.append(request.run_id)
            self.unsent[request.run_id] = report
            self._save()
        self.flush()
        return True

    def loop(self, stop: threading.Event, idle_seconds: float) -> None:
        """The runner's thread: run checks as they come, until `stop`."""
        while not stop.is_set():
            if not self.step():
                self.wake.wait(idle_seconds)
                self.wake.clear()

    def _started(self, proc: subprocess.Popen[str]) -> None:
        self.running = proc

    def stop(self) -> None:
        """Kill a check still running (the agent is stopping)."""
        proc = self.running
        if proc is not None and proc.poll() is None:
            _kill(proc)

    def flush(self) -> None:
        """Send every report the server has not taken yet; keep those it could not."""
        for run_id, report in list(self.unsent.items()):
            try:
                self.send(report)
            except ServerRefused as exc:
                if exc.status == 404:
                    log.warning("check %s: the server does not know it; dropped", run_id)
                elif exc.status in MALFORMED and report.ok:
                    message = f"the server refused the check's report: {exc.message}"
                    self.unsent[run_id] = CheckReport(run_id=run_id, ok=False, message=message)
                    self._save()
                    continue
                elif exc.status in MALFORMED:
                    log.warning("check %s: report refused (%s); dropped", run_id, exc)
                else:
                    log.warning("check %s: report not taken (%s); retrying", run_id, exc)
                    continue
            except Exception as exc:  # network trouble: the next round retries
                log.warning("check %s: report not sent (%s); retrying", run_id, exc)
                continue
            with self.lock:
                self.unsent.pop(run_id, None)
                self._save()

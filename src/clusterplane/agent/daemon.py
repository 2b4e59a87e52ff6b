"""`clusterplane agent`: enroll once, then pull, converge, report and watch health.

Four loops share one signed HTTP client:
* the main thread long-polls the host's assignment and applies each new generation
  (on start it re-applies the current one: converging is idempotent), and the current
  one again every `converge_seconds` once the server confirmed it (dead daemons
  restarted, fresh runtime reports), reporting at once;
* a heartbeat thread reports status every `heartbeat_seconds`; the server's answer names
  the active checks it asks for, which go to the check runner;
* a check thread runs them one at a time and reports each (`checks.CheckRunner`);
* a health thread sends new kernel-log and NVML signals every `health.poll_seconds`,
  persisting the cursors only once the server accepted them.
Network trouble is waited out with backoff; only a refused enrollment ends the agent.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from clusterplane.domain.agent_protocol import (
    NODE_PHASE_OF,
    Assignment,
    Inventory,
    StatusReport,
)

from . import config as config_module
from . import inventory as inventory_module
from . import nvml as nvml_module
from .checks import CheckRunner
from .client import AgentClient, ServerRefused
from .converge import Node
from .health import HealthCollector
from .hostops import HostOps
from .identity import Enrolled, load_enrollment, load_or_create_key, save_enrollment
from .runtimes import Registry

log = logging.getLogger("clusterplane.agent")
RUNTIME_ENTRY_POINTS = "clusterplane.agent_runtimes"
VERSION = "1"
INVENTORY_EVERY = 60.0  # seconds between looks at the host's inventory


class EnrollmentRefused(Exception):
    pass


def default_registry() -> Registry:
    """Runtimes installed as `clusterplane.agent_runtimes` entry points (name -> factory)."""
    registry = Registry()
    for entry in metadata.entry_points(group=RUNTIME_ENTRY_POINTS):
        registry.register(entry.name, entry.load())
    return registry


def _backoff(attempt: int) -> float:
    return float(min(30.0, 0.5 * 2 ** min(attempt, 6)) * random.uniform(0.8, 1.2))


class Agent:
    def __init__(
        self,
        server: str,
        state_dir: Path,
        config: config_module.AgentConfig,
        *,
        registry: Registry | None = None,
        nvml: Any | None = None,
    ):
        self.state_dir = state_dir
        self.config = config
        self.nvml = nvml
        self.inventory: Inventory = inventory_module.collect(config, nvml=nvml)
        self.key = load_or_create_key(state_dir)
        self.enrolled = load_enrollment(state_dir)
        self.client = AgentClient(
            self.enrolled.server if self.enrolled else server,
            self.key,
            host_id=self.enrolled.host_id if self.enrolled else None,
        )
        self.server = server
        ops = HostOps(config.node.root, set_kernel_hostname=config.node.set_kernel_hostname)
        self.node = Node(
            ops,
            state_dir,
            shared_fs=config.node.shared_fs,
            sshd_reload=config.node.sshd_reload,
            registry=registry or default_registry(),
            inventory=self.inventory,
            runtime_options=config.runtimes,
        )
        self.health = HealthCollector(state_dir, config.health, nvml=nvml)
        self.checks = CheckRunner(
            state_dir, {str(k): v for k, v in config.checks.items()}, self.client.check_report
        )
        self._inventory_at = time.monotonic()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        applied = self.node.store.value
        self.status = StatusReport(
            generation_applied=applied.generation,
            cluster_id=applied.cluster_id,
            phase="idle",
            inventory=self.inventory,
            agent_version=VERSION,
        )

    def enroll(self, join_token: str | None) -> Enrolled:
        if self.enrolled is not None:
            return self.enrolled
        if not join_token:
            raise EnrollmentRefused("not enrolled yet: start with --join-token")
        attempt = 0
        while True:
            try:
                answer = self.client.enroll(join_token, self.inventory)
                break
            except ServerRefused as exc:
                raise EnrollmentRefused(exc.message) from exc
            except httpx.HTTPError as exc:
                log.warning("cannot reach %s to enroll: %s", self.server, exc)
                time.sleep(_backoff(attempt))
                attempt += 1
        self.enrolled = Enrolled(self.server, answer["host_id"], answer["host_name"])
        save_enrollment(self.state_dir, self.enrolled)
        log.info("enrolled as %s (%s)", answer["host_name"], answer["host_id"])
        return self.enrolled

    def run(self, join_token: str | None) -> None:
        self.enroll(join_token)
        threads = [
            threading.Thread(
                target=self._loop,
                args=(self._report, self.config.heartbeat_seconds),
                name="heartbeat",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(self._send_health, self.config.health.poll_seconds),
                name="health",
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(self._run_checks, self.config.heartbeat_seconds),
                name="checks",
                daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()
        try:
            self._pull_loop()
        finally:
            self.stop.set()
            self.checks.stop()

    def _run_checks(self) -> None:
        self.checks.loop(self.stop, self.config.heartbeat_seconds)

    def _loop(self, action: Any, every: float) -> None:
        while not self.stop.is_set():
            try:
                action()
            except (httpx.HTTPError, ServerRefused) as exc:
                log.warning("%s: %s", threading.current_thread().name, exc)
            except Exception:
                log.exception("%s failed", threading.current_thread().name)
            self.stop.wait(every)

    def _refresh_inventory(self) -> None:
        """Look at the host again now and then; a change goes with the next report."""
        now = time.monotonic()
        if now - self._inventory_at < INVENTORY_EVERY:
            return
        self._inventory_at = now
        try:
            fresh = inventory_module.collect(self.config, nvml=self.nvml)
        except inventory_module.InventoryError as exc:
            log.warning("inventory: %s", exc)
            return
        if fresh != self.inventory:
            self.inventory = self.node.inventory = fresh
            with self._lock:
                self.status = self.status.model_copy(update={"inventory": fresh})

    def _report(self) -> None:
        self._refresh_inventory()
        with self._lock:
            report = self.status
        self.checks.submit(self.client.report(report))
        if report.inventory is not None:
            with self._lock:
                if self.status is report:
                    self.status = report.model_copy(update={"inventory": None})

    def _send_health(self) -> None:
        events = self.health.collect(self.inventory.gpus)
        for start in range(0, len(events), 100):
            self.client.health_events(events[start : start + 100])
        self.health.commit()

    def _pull_loop(self) -> None:
        """Long-poll the assignment; apply each new generation, and the current one again
        every `converge_seconds`, but only right after the server said it is still current:
        a host cut off from the control plane does not act on what may be stale (a node
        its cluster removed meanwhile must not register again when the link comes back)."""
        after, attempt, applied_at = -1, 0, time.monotonic()
        while not self.stop.is_set():
            try:
                assignment, retry_after = self.client.assignment(after)
                attempt = 0
            except (httpx.HTTPError, ServerRefused) as exc:
                log.warning("cannot pull the assignment: %s", exc)
                self.stop.wait(_backoff(attempt))
                attempt += 1
                continue
            due = time.monotonic() - applied_at >= self.config.converge_seconds
            if assignment.generation > after or (due and assignment.generation == after):
                self.apply(assignment)
                after, applied_at = assignment.generation, time.monotonic()
            elif retry_after:
                self.stop.wait(min(retry_after, self.config.converge_seconds))

    def apply(self, assignment: Assignment) -> None:
        phase = "converging" if assignment.cluster_id else "cleaning"
        with self._lock:
            self.status = self.status.model_copy(
                update={"phase": phase, "node_phase": NODE_PHASE_OF[phase]}
            )
        outcome = self.node.apply(assignment)
        log.info("generation %s applied: %s", outcome.generation, outcome.phase)
        with self._lock:
            self.status = self.status.model_copy(
                update={
                    "generation_applied": outcome.generation,
                    "cluster_id": outcome.cluster_id,
                    "phase": outcome.phase,
                    "node_phase": NODE_PHASE_OF[outcome.phase],
                    "sections": outcome.sections,
                }
            )
        try:
            self._report()
        except (httpx.HTTPError, ServerRefused) as exc:
            log.warning("report after applying failed (the heartbeat retries): %s", exc)


def main(server: str, join_token: str | None, state_dir: Path, config_path: Path | None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        config = config_module.load(config_path)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        log.error("cannot use the config %s: %s", config_path, exc)
        return 2
    nvml = nvml_module.load() if config.gpu.source != "config" else None
    try:
        agent = Agent(server, state_dir, config, nvml=nvml)
        agent.run(join_token)
    except (EnrollmentRefused, inventory_module.InventoryError) as exc:
        log.error("%s", exc)
        return 2
    return 0

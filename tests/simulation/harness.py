"""Deterministic simulation of the whole engine, in the style FoundationDB made famous.

One seed fixes everything: the random schedule of API calls and clock jumps, the ids the
server mints, the simulated fleet's durations, and every injected fault (driver errors
and timeouts, failed commits, crashes in the middle of a controller pass, replayed
requests). The engine runs in-process on a manual clock; a crash throws the process
away with its leases still held and starts a new one on the same database file.

Besides clusters, volumes and requested repairs, a history holds bookings (scheduled and
reserved windows), capacity pools and the clusters drawing from them, preemptible GPUs,
volumes growing against the region's storage, and health signals that the engine turns
into repairs a member approves or rejects (`capacity`, `signals`).

After every step the invariants are checked; at the end faults stop, the operator clears
the open signals, the process restarts, and every cluster must converge to what was asked
for within a bounded number of controller passes. `run_seed(n)` replays seed n exactly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from clusterplane.app import Application, build
from clusterplane.clock import ManualClock
from clusterplane.db.engine import transaction
from clusterplane.db.rows import ProjectRow
from clusterplane.services.access import ids
from clusterplane.services.access.auth import generate_key_text
from clusterplane.settings import EngineSettings, HealthSettings, Settings, SimulationSettings
from tests.simulation import capacity, signals
from tests.simulation.faults import Faults, SimulatedCrash, faulty_drivers
from tests.simulation.invariants import check_converged, check_invariants
from tests.support.engine import SMALL_FLEET

CLUSTERS = "/v1/compute/clusters"
VOLUMES = "/v1/compute/clusters/storage/volumes"
BASE = {
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
CONVERGE_ROUNDS = 200
DEFAULT_STEPS = 30
_template: Path | None = None


class SimulationFailure(AssertionError):
    pass


@dataclass
class Ledger:
    """What clients were told: the truth the server must never contradict."""

    wanted: dict[str, int] = field(default_factory=dict)  # cluster id -> num_gpus
    deleted: set[str] = field(default_factory=set)
    refused_names: set[str] = field(default_factory=set)  # creates answered with a 5xx
    volumes: set[str] = field(default_factory=set)
    deleted_volumes: set[str] = field(default_factory=set)
    remediations: set[str] = field(default_factory=set)
    # cluster id -> (start, end) of its window: scheduled, reserved, or its pool's
    bookings: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)


def template_database() -> Path:
    """A migrated, fleet-synced database file, copied for every seed (saves the setup)."""
    global _template
    if _template is None:
        folder = Path(tempfile.mkdtemp(prefix="cp-sim-template-"))
        key = generate_key_text()
        app = build(
            Settings(
                database_url=f"sqlite:///{folder / 't.db'}",
                fleet_file=SMALL_FLEET,
                admin_api_key=key,
                run_controllers=False,
            ),
            clock=ManualClock(),
        )
        with transaction(app.sessions) as session:
            project = session.scalars(select(ProjectRow.id)).one()
        app.engine.dispose()
        (folder / "key").write_text(key)
        (folder / "project").write_text(project)
        _template = folder
    return _template


class World:
    def __init__(self, seed: int, workdir: Path, *, steps: int = DEFAULT_STEPS):
        self.seed = seed
        self.rng = random.Random(seed)
        self.steps = steps
        self.faults = Faults(random.Random(seed * 7919 + 1))
        self.clock = ManualClock()
        self.ledger = Ledger()
        template = template_database()
        shutil.copy(template / "t.db", workdir / "sim.db")
        self.admin_key = (template / "key").read_text()
        self.project_id = (template / "project").read_text()
        self.base_body = BASE
        self.database_url = f"sqlite:///{workdir / 'sim.db'}"
        self.trace: list[str] = []
        self.app: Application | None = None
        self.client: httpx.AsyncClient | None = None
        # one event loop for the whole run: requests go straight into the ASGI app, with no
        # thread portal per request (a TestClient's costs ten times the request itself)
        self.loop = asyncio.new_event_loop()
        self.restarts = 0
        self.start()

    # -- process lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        settings = Settings(
            database_url=self.database_url,
            fleet_file=SMALL_FLEET,
            admin_api_key=self.admin_key,
            run_controllers=False,
            engine=EngineSettings(remediation_grace_seconds=60),
            # two-worker clusters may be repaired automatically too (one of two unhealthy)
            health=HealthSettings(max_unhealthy_share=0.5),
            simulation=SimulationSettings(seed=self.seed, duration_factor=0.1),
        )
        drivers = faulty_drivers(self.faults, settings)
        self.app = build(
            settings,
            clock=self.clock,
            drivers=drivers,
            lease_clock=self.clock,
            wall_clock=self.clock,  # certificates too: one clock keeps a seed reproducible
        )
        self.faults.install_commit_failures(self.app.sessions)
        transport = httpx.ASGITransport(app=self.app.api, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://simulation")

    def crash(self, why: str) -> None:
        """Throw the process away mid-flight: leases stay held, memory is lost."""
        self.trace.append(f"crash: {why}")
        assert self.app is not None
        self.app.engine.dispose()
        self.app = None
        self.close_client()
        self.restarts += 1
        self.start()

    def close_client(self) -> None:
        if self.client is not None:
            self.loop.run_until_complete(self.client.aclose())
            self.client = None

    # -- steps ---------------------------------------------------------------------------

    def headers(self, retry: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}", "x-stainless-retry-count": str(retry)}

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        retry: int = 0,
    ) -> Any:
        assert self.client is not None
        request = self.client.request(
            method, path, json=json, params=params, headers=self.headers(retry)
        )
        response = self.loop.run_until_complete(request)
        if response.status_code >= 500 and self.faults.commit_failure == 0:
            raise SimulationFailure(f"{method} {path} -> {response.status_code} with no fault")
        return response

    def run_controllers(self) -> None:
        assert self.app is not None
        try:
            self.app.manager.run_until_idle(max_passes=50)
        except SimulatedCrash as crash:
            self.crash(str(crash))

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.run_controllers()

    def step(self, number: int) -> None:
        actions: list[tuple[float, Callable[[int], None]]] = [
            (0.16, self.create_cluster),
            (0.09, self.scale_cluster),
            (0.07, self.delete_cluster),
            (0.05, self.create_volume),
            (0.02, lambda n: capacity.resize_volume(self, n)),
            (0.03, self.delete_volume),
            (0.04, self.remediate),
            (0.05, lambda n: capacity.book(self, n)),
            (0.03, lambda n: capacity.pool(self, n)),
            (0.03, lambda n: capacity.preemptible(self, n)),
            (0.06, lambda n: signals.signal(self, n)),
            (0.04, lambda n: signals.review(self, n)),
            (0.26, lambda _: self.advance(self.rng.choice([5, 20, 60, 180]))),
            (0.04, lambda _: self.crash("kill -9 between steps")),
            (0.03, lambda _: self.faults.storm()),
        ]
        roll = self.rng.random()
        for weight, action in actions:
            roll -= weight
            if roll <= 0:
                action(number)
                break
        else:
            self.faults.calm()

    def run(self) -> None:
        ids.seed(self.seed)
        try:
            capacity.set_quota(self)
            for number in range(self.steps):
                self.step(number)
                check_invariants(self)
            self.converge()
        finally:
            ids.seed(None)
            if self.app is not None:
                self.app.engine.dispose()
            self.close_client()
            self.loop.close()

    def converge(self) -> None:
        self.faults.calm()
        signals.clear(self)
        self.crash("final restart")
        for _ in range(CONVERGE_ROUNDS):
            self.advance(60)
            if check_converged(self, final=False):
                check_converged(self, final=True)
                return
        check_converged(self, final=True)

    # -- API actions ---------------------------------------------------------------------

    def create_cluster(self, number: int) -> None:
        name = f"s{number}"
        gpus = self.rng.choice([8, 8, 16, 24, 32])
        body = {**BASE, "cluster_name": name, "num_gpus": gpus}
        if self.rng.random() < 0.15:
            body["num_preemptible_gpus"] = self.rng.choice([8, 16, 32])
        if self.rng.random() < 0.2 and self.ledger.volumes:
            body["volume_id"] = self.rng.choice(sorted(self.ledger.volumes))
        response = self.call("POST", CLUSTERS, json=body)
        self.trace.append(f"create {name} {gpus} -> {response.status_code}")
        if response.status_code == 200:
            cid = response.json()["cluster_id"]
            self.ledger.wanted[cid] = gpus
            if self.rng.random() < 0.3:  # the SDK's retry after a dropped connection
                again = self.call("POST", CLUSTERS, json=body, retry=1)
                if again.status_code == 200 and again.json()["cluster_id"] != cid:
                    raise SimulationFailure(f"a replayed create made a second cluster for {name}")
        elif response.status_code >= 500:
            self.ledger.refused_names.add(name)

    def pick_cluster(self) -> str | None:
        live = sorted(self.ledger.wanted)
        return self.rng.choice(live) if live else None

    def pick_any_cluster(self) -> str | None:
        """A cluster wanted for good or for its window."""
        live = sorted(self.ledger.wanted) + sorted(self.ledger.bookings)
        return self.rng.choice(live) if live else None

    def scale_cluster(self, _: int) -> None:
        cid = self.pick_cluster()
        if cid is None:
            return
        gpus = self.rng.choice([8, 16, 24, 32, 40])
        response = self.call("PUT", f"{CLUSTERS}/{cid}", json={"num_gpus": gpus})
        self.trace.append(f"scale {cid[:8]} {gpus} -> {response.status_code}")
        if response.status_code == 200:
            self.ledger.wanted[cid] = gpus

    def delete_cluster(self, _: int) -> None:
        cid = self.pick_any_cluster()
        if cid is None:
            return
        response = self.call("DELETE", f"{CLUSTERS}/{cid}")
        self.trace.append(f"delete {cid[:8]} -> {response.status_code}")
        if response.status_code == 200:
            self.ledger.wanted.pop(cid, None)
            self.ledger.bookings.pop(cid, None)
            self.ledger.deleted.add(cid)
            again = self.call("DELETE", f"{CLUSTERS}/{cid}", retry=1)
            if again.status_code not in (200, 500):
                raise SimulationFailure(f"a replayed delete got {again.status_code}")

    def create_volume(self, number: int) -> None:
        body = {
            "volume_name": f"v{number}",
            "size_tib": self.rng.choice([1, 2, 4, 16, 40]),
            "region": "test-1",
        }
        response = self.call("POST", VOLUMES, json=body)
        self.trace.append(f"volume v{number} -> {response.status_code}")
        if response.status_code == 200:
            self.ledger.volumes.add(response.json()["volume_id"])

    def delete_volume(self, _: int) -> None:
        if not self.ledger.volumes:
            return
        vid = self.rng.choice(sorted(self.ledger.volumes))
        response = self.call("DELETE", f"{VOLUMES}/{vid}")
        self.trace.append(f"delete volume {vid[:8]} -> {response.status_code}")
        if response.status_code == 200:
            self.ledger.volumes.discard(vid)
            self.ledger.deleted_volumes.add(vid)

    def remediate(self, _: int) -> None:
        cid = self.pick_cluster()
        if cid is None:
            return
        cluster = self.call("GET", f"{CLUSTERS}/{cid}")
        if cluster.status_code != 200 or not cluster.json()["gpu_worker_nodes"]:
            return
        worker = self.rng.choice(cluster.json()["gpu_worker_nodes"])
        mode = self.rng.choice(
            [
                "REMEDIATION_MODE_REBOOT_VM",
                "REMEDIATION_MODE_VM_ONLY",
                "REMEDIATION_MODE_HOST_AWARE",
            ]
        )
        response = self.call(
            "POST",
            f"{CLUSTERS}/{cid}/instances/{worker['instance_id']}/remediations",
            json={"mode": mode},
        )
        self.trace.append(f"remediate {cid[:8]} {mode[17:]} -> {response.status_code}")
        if response.status_code == 200:
            self.ledger.remediations.add(response.json()["id"])


def run_seed(seed: int, *, steps: int = DEFAULT_STEPS) -> World:
    """Run one seed to the end; raises SimulationFailure (with the trace) on a violation.

    The engine's own error logs are silenced: injected faults make them by the hundred.
    """
    logging.getLogger("clusterplane").setLevel(logging.CRITICAL)
    workdir = Path(tempfile.mkdtemp(prefix=f"cp-sim-{seed}-"))
    world = World(seed, workdir, steps=steps)
    try:
        world.run()
    except (SimulationFailure, AssertionError) as failure:
        trace = "\n  ".join(world.trace[-40:])
        raise SimulationFailure(f"seed {seed}: {failure}\n  last steps:\n  {trace}") from failure
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return world

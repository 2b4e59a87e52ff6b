"""What controllers make of drivers that fail, wait or run checks of their own.

A permanent failure fails the node, drain or volume it happened to, with the driver's
message on the wire; a temporary one only delays; acceptance tests fail a host whose own
driver's check fails (no simulated fault involved); the registry fails a host managed by
a driver the server does not have; the fault API exists only beside the simulated fleet.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.engine import transaction
from clusterplane.db.rows import EventRow, HostRow
from clusterplane.domain.checks import CheckPurpose
from clusterplane.domain.enums import ClusterType
from clusterplane.errors import PermanentProviderError, TemporaryProviderError
from clusterplane.providers.models import (
    CheckProgress,
    CheckSpec,
    DrainProgress,
    DrainSpec,
    DriverState,
    HostSpec,
    InstanceSpec,
    NodeProgress,
    VolumeProgress,
    VolumeSpec,
)
from clusterplane.providers.registry import Drivers
from clusterplane.simulation.flavour import SimulatedFlavour
from clusterplane.simulation.hosts import SimulatedHostDriver
from clusterplane.simulation.storage import SimulatedStorage
from tests.integration.test_lifecycle import create, get, when
from tests.integration.test_remediation_execution import remediate, remediation, states_seen
from tests.support.engine import Engine, make_engine

VOLUMES = "/v1/compute/clusters/storage/volumes"


class BrokenHosts(SimulatedHostDriver):
    """Fails or delays chosen hosts; a check on a chosen host finds a bad GPU."""

    def __init__(self) -> None:
        super().__init__(duration_factor=0.1)
        self.dead: set[str] = set()  # host names whose preparation fails
        self.busy = 0  # how many more calls answer "not yet"
        self.bad_gpu: set[str] = set()  # host names whose checks find a failing GPU
        self.acceptance_seconds = 0.0  # how long an acceptance check runs on the host
        self.acceptance_runs: dict[str, datetime] = {}  # run id -> when it started

    def prepare(self, spec: InstanceSpec, now: datetime) -> NodeProgress:
        if spec.host_name in self.dead:
            raise PermanentProviderError("the host does not answer its PXE boot")
        return super().prepare(spec, now)

    def describe(self, spec: InstanceSpec, state: DriverState, now: datetime) -> NodeProgress:
        if self.busy > 0:
            self.busy -= 1
            raise TemporaryProviderError("the host's BMC is busy", delay_seconds=30)
        return super().describe(spec, state, now)

    def start_check(self, host: HostSpec, check: CheckSpec, now: datetime) -> CheckProgress:
        if check.purpose != CheckPurpose.ACCEPTANCE or not self.acceptance_seconds:
            return super().start_check(host, check, now)
        began = self.acceptance_runs.setdefault(check.run_id, now)  # asked again: same run
        state = {"started_at": began.isoformat(), "duration": self.acceptance_seconds}
        return self.poll_check(host, check, state, now)

    def poll_check(
        self, host: HostSpec, check: CheckSpec, state: DriverState, now: datetime
    ) -> CheckProgress:
        progress = super().poll_check(host, check, state, now)
        if progress.done and host.host_name in self.bad_gpu:
            bad = {"failing_gpus": [5], "error": "GPU 5: ECC page retirement"}
            figures = {**progress.figures, **bad}
            return CheckProgress(True, progress.state, figures=figures)
        return progress


class StuckDrains(SimulatedFlavour):
    def drain(self, spec: DrainSpec, state: DriverState | None, now: datetime) -> DrainProgress:
        return DrainProgress(False, state or {}, failed=True, message="slurmctld does not answer")


class FullFiler(SimulatedStorage):
    def create_volume(self, spec: VolumeSpec, now: datetime) -> VolumeProgress:
        raise PermanentProviderError("the filer has no room for a new export")


class Kit:
    def __init__(self, **parts: Any) -> None:
        self.hosts = BrokenHosts()
        self.flavour = parts.get("flavour") or SimulatedFlavour(duration_factor=0.1)
        self.storage = parts.get("storage") or SimulatedStorage(duration_factor=0.1)
        self.host_drivers: dict[str, Any] = parts.get("host_drivers") or {"simulated": self.hosts}

    def __call__(self, sessions: sessionmaker[Session]) -> Drivers:
        return Drivers(
            hosts=self.host_drivers,
            flavours={t.value: self.flavour for t in ClusterType},
            storage=self.storage,
            default_host=next(iter(self.host_drivers)),
        )


@pytest.fixture
def kit() -> Kit:
    return Kit()


@pytest.fixture
def broken(tmp_path: Path, kit: Kit) -> Iterator[Engine]:
    yield from make_engine(tmp_path, drivers=kit)


def events_of(engine: Engine, kind: str) -> list[str]:
    with transaction(engine.app.sessions) as session:
        return list(session.scalars(select(EventRow.message).where(EventRow.kind == kind)))


def workers(engine: Engine, cluster_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get(engine, cluster_id)["gpu_worker_nodes"]
    return found


def test_a_node_whose_host_fails_is_failed_on_the_wire_with_an_event(broken: Engine, kit: Kit):
    with transaction(broken.app.sessions) as session:
        names = sorted(session.scalars(select(HostRow.name).where(HostRow.region == "test-1")))
    kit.hosts.dead.update(names)
    cluster_id = create(broken, num_gpus=8)["cluster_id"]
    broken.advance(3600, step=60)
    cluster = get(broken, cluster_id)
    [node] = cluster["gpu_worker_nodes"]
    assert node["status"] == "Failed"
    assert node["phase_transitions"][-1]["phase"] == "NODE_PHASE_FAILED"
    assert cluster["status"] != "Ready"
    [message] = events_of(broken, "node_failed")
    assert "does not answer its PXE boot" in message and node["host_name"] in message


def test_a_driver_that_is_not_ready_yet_delays_the_bring_up_and_fails_nothing(
    broken: Engine, kit: Kit
):
    kit.hosts.busy = 25
    cluster_id = create(broken, num_gpus=8)["cluster_id"]
    broken.advance(3 * 3600, step=60)
    assert kit.hosts.busy == 0, "the driver was asked again after each delay"
    assert get(broken, cluster_id)["status"] == "Ready"
    assert events_of(broken, "node_failed") == []


def test_a_host_whose_own_check_fails_fails_acceptance_without_any_simulated_fault(
    broken: Engine, kit: Kit
):
    cluster_id = create(broken, num_gpus=16)["cluster_id"]
    victim = workers(broken, cluster_id)[0]["host_name"]
    kit.hosts.bad_gpu.add(victim)
    broken.advance(3 * 3600, step=60)
    runs = broken.client.get(
        "/admin/v1/health/checks", params={"cluster_id": cluster_id}, headers=broken.headers()
    ).json()["checks"]
    failed = [r for r in runs if r["state"] == "FAILED" and r["purpose"] == "acceptance"]
    assert [r["host_name"] for r in failed] == [victim]
    assert "ECC page retirement" in failed[0]["message"] or failed[0]["result"]["failing_gpus"]
    serving = {n["host_name"] for n in workers(broken, cluster_id) if not n["deleted_at"]}
    assert victim not in serving, "the failing host was replaced"
    assert get(broken, cluster_id)["status"] == "Ready"


def test_acceptance_waits_for_checks_a_host_driver_is_still_running(broken: Engine, kit: Kit):
    kit.hosts.acceptance_seconds = 900.0
    cluster_id = create(broken, num_gpus=16)["cluster_id"]
    broken.advance(3 * 3600, step=60)
    cluster = get(broken, cluster_id)
    assert cluster["status"] == "Ready"
    entered = {p["phase"]: when(p["transition_time"]) for p in cluster["phase_transitions"]}
    testing = (
        entered["CLUSTER_PHASE_RUNNING_NCCL_TESTS"]
        - entered["CLUSTER_PHASE_RUNNING_ACCEPTANCE_TESTS"]
    )
    assert testing.total_seconds() >= 900, "the phase ended only once every check had"
    assert len(kit.hosts.acceptance_runs) == 2 * 3 + 2 * 2, "each check ran once per worker"
    runs = broken.client.get(
        "/admin/v1/health/checks", params={"cluster_id": cluster_id}, headers=broken.headers()
    ).json()["checks"]
    assert not [r for r in runs if r["state"] == "FAILED"]


@pytest.fixture
def stuck(tmp_path: Path) -> Iterator[Engine]:
    yield from make_engine(tmp_path, drivers=Kit(flavour=StuckDrains(duration_factor=0.1)))


def test_a_drain_the_flavour_fails_fails_the_repair_with_its_message(stuck: Engine):
    cluster_id = create(stuck, num_gpus=16)["cluster_id"]
    stuck.advance(3 * 3600, step=60)
    cluster = get(stuck, cluster_id)
    rid = remediate(stuck, cluster, "REMEDIATION_MODE_REBOOT_VM")
    assert states_seen(stuck, cluster_id, rid)[-1] == "FAILED"
    assert "slurmctld does not answer" in remediation(stuck, cluster_id, rid)["error_message"]


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Engine]:
    yield from make_engine(tmp_path, drivers=Kit(storage=FullFiler()))


def test_a_volume_the_storage_driver_cannot_create_is_failed_with_its_reason(full: Engine):
    volume = full.client.post(
        VOLUMES,
        json={"volume_name": "ds", "size_tib": 1, "region": "test-1"},
        headers=full.headers(),
    ).json()
    full.advance(600, step=20)
    shown = full.client.get(f"{VOLUMES}/{volume['volume_id']}", headers=full.headers()).json()
    assert shown["status"] == "failed"
    [message] = events_of(full, "failed")
    assert "no room for a new export" in message


def test_a_host_managed_by_a_driver_the_server_lacks_fails_its_node_naming_it(
    broken: Engine,
):
    with transaction(broken.app.sessions) as session:
        session.execute(update(HostRow).values(driver="baremetal"))
    listed = broken.client.get("/admin/v1/fleet/hosts", headers=broken.headers()).json()
    assert {h["driver"] for h in listed["hosts"]} == {"baremetal"}, "the host list says who manages"
    cluster_id = create(broken, num_gpus=8)["cluster_id"]
    broken.advance(1800, step=60)
    [node] = workers(broken, cluster_id)
    assert node["status"] == "Failed"
    assert any("no host driver 'baremetal'" in m for m in events_of(broken, "node_failed"))
    broken.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=broken.headers())
    broken.advance(1800, step=60)
    gone = broken.client.get(f"/v1/compute/clusters/{cluster_id}", headers=broken.headers())
    assert gone.status_code == 404, "a node no driver ever prepared needs none to go"


def test_an_agent_host_without_an_enrolled_agent_fails_its_node_naming_the_host(
    broken: Engine,
):
    with transaction(broken.app.sessions) as session:
        session.execute(update(HostRow).values(driver="agent"))
    # SLURM: the cluster flavour agent hosts have (a KUBERNETES cluster on them has none
    # yet and fails at its first step instead, which is not this test's point).
    cluster_id = create(broken, num_gpus=8, cluster_type="SLURM", slurm_shm_size_gib=1)[
        "cluster_id"
    ]
    broken.advance(1800, step=60)
    [node] = workers(broken, cluster_id)
    assert node["status"] == "Failed"
    assert any("no node agent is enrolled" in m for m in events_of(broken, "node_failed"))


@pytest.fixture
def unsimulated(tmp_path: Path) -> Iterator[Engine]:
    other = SimulatedHostDriver()
    yield from make_engine(tmp_path, drivers=Kit(host_drivers={"lab": other}))


def test_the_fault_api_exists_only_beside_the_simulated_host_driver(
    engine: Engine, unsimulated: Engine
):
    body = {"kind": "ecc"}
    host = next(
        iter(engine.client.get("/admin/v1/fleet/hosts", headers=engine.headers()).json()["hosts"])
    )["name"]
    assert (
        engine.client.post(
            f"/admin/v1/fleet/hosts/{host}/faults", json=body, headers=engine.headers()
        ).status_code
        == 200
    )
    assert (
        unsimulated.client.post(
            f"/admin/v1/fleet/hosts/{host}/faults", json=body, headers=unsimulated.headers()
        ).status_code
        == 404
    )

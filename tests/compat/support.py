"""Helpers of the conformance suite: polling a real server, tenants via the admin API."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import together
from together.types.cluster import Cluster

from tests.support.server import ServerProcess

T = TypeVar("T")

# The small fleet (src/clusterplane/fleets/small.yaml) as the API's catalog shows it.
H100_REGION = "test-1"
H100_DRIVER_ID = "cu128-drv570-ubuntu2204"
L40_REGION = "test-2"
L40_DRIVER_ID = "cu126-drv560-ubuntu2204"

# A cluster at time-scale 600 is Ready in a few wall seconds; this is the give-up point.
READY_TIMEOUT = 60.0


def wait_until(probe: Callable[[], T | None], *, what: str, timeout: float = READY_TIMEOUT) -> T:
    """Call `probe` until it returns something truthy and return that; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def wait_for_cluster(
    client: together.Together,
    cluster_id: str,
    predicate: Callable[[Cluster], bool],
    *,
    what: str,
    timeout: float = READY_TIMEOUT,
) -> Cluster:
    """Poll `retrieve` until `predicate` holds; the failure message shows the last state."""
    last: list[Cluster] = []

    def probe() -> Cluster | None:
        cluster = client.clusters.retrieve(cluster_id)
        last[:] = [cluster]
        return cluster if predicate(cluster) else None

    try:
        return wait_until(probe, what=what, timeout=timeout)
    except AssertionError as exc:
        state = last[0] if last else None
        summary = (
            {
                "status": state.status,
                "workers": [(n.node_id, n.status) for n in state.gpu_worker_nodes],
                "deleted": [n.node_id for n in state.deleted_gpu_worker_nodes or []],
            }
            if state is not None
            else None
        )
        raise AssertionError(f"{exc}; last seen: {summary}") from None


def is_ready(cluster: Cluster) -> bool:
    return cluster.status == "Ready"


def running_workers(cluster: Cluster) -> list[Any]:
    return [
        n
        for n in cluster.gpu_worker_nodes
        if n.phase_transitions and n.phase_transitions[-1].phase == "NODE_PHASE_RUNNING"
    ]


def create_h100_cluster(client: together.Together, name: str, num_gpus: int) -> Cluster:
    return client.clusters.create(
        cluster_name=name,
        billing_type="ON_DEMAND",
        gpu_type="H100_SXM",
        num_gpus=num_gpus,
        region=H100_REGION,
        nvidia_version_id=H100_DRIVER_ID,
    )


@dataclass(frozen=True)
class Tenant:
    user_id: str
    project_id: str
    api_key: str


def create_tenant(server: ServerProcess, name: str) -> Tenant:
    """A new user in a new project of their own, with an API key for that project."""
    with server.client() as admin:
        user = admin.post("/admin/v1/users", json={"name": name})
        user.raise_for_status()
        project = admin.post("/admin/v1/projects", json={"name": name, "slug": name})
        project.raise_for_status()
        user_id, project_id = user.json()["id"], project.json()["id"]
        key = admin.post("/admin/v1/api-keys", json={"user_id": user_id, "project_id": project_id})
        key.raise_for_status()
    return Tenant(user_id=user_id, project_id=project_id, api_key=key.json()["api_key"])


def fleet_hosts(server: ServerProcess) -> list[dict[str, Any]]:
    with server.client() as admin:
        response = admin.get("/admin/v1/fleet/hosts")
        response.raise_for_status()
        hosts: list[dict[str, Any]] = response.json()["hosts"]
    return hosts


OPEN_REMEDIATION_STATES = ["PENDING_APPROVAL", "PENDING", "QUARANTINING", "QUARANTINED", "RUNNING"]


def repair_anew(
    client: together.Together, cluster_id: str, instance_id: str, mode: str, **extra: Any
) -> Any:
    """A new remediation of the instance once whatever was open on it has ended (a node has
    one open remediation at a time): a waiting one is cancelled, a started one waited out."""
    api = client.clusters.remediations

    def still_open() -> list[Any]:
        page = api.list(
            instance_id,
            cluster_id=cluster_id,
            page_size=100,
            state=OPEN_REMEDIATION_STATES,  # type: ignore[arg-type]
        )
        return list(page.remediations)

    for remediation in still_open():
        with contextlib.suppress(together.BadRequestError):  # started: wait for its end
            api.cancel(remediation.id, cluster_id=cluster_id, instance_id=instance_id)
    wait_until(lambda: not still_open(), what=f"the open remediation of {instance_id} to end")
    return api.create(instance_id, cluster_id=cluster_id, mode=mode, **extra)  # type: ignore[arg-type]

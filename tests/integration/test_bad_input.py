"""Malformed and hostile requests: each gets the right 4xx, the spec's error envelope, and
leaves the database exactly as it was.

Every case runs against the same valid starting state (built by `world`): project `alpha`
with a cluster, an attached volume, a free volume and remediations in three states; project
`beta` with its own key, cluster, volume and remediation. The case fires one bad request,
checks status and body (spec §1.6: `{"error": {"message", "type", "param", "code"}}`, a
readable message without tracebacks or pydantic links, `x-should-retry: false`), and
compares `engine.dump()` before and after.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from clusterplane.services.access.auth import generate_key_text
from tests.support.engine import Engine, make_engine

DRIVER_1 = "cu128-drv570-ubuntu2204"
MiB = 1024 * 1024
DROP = object()
"""A sentinel for `create_body`: leave this key out of the body."""


# --- the starting state --------------------------------------------------------------------


@dataclass
class World:
    engine: Engine
    key_a: str
    key_b: str
    project_a: str
    project_b: str
    user_a: str
    cluster_a: str
    cluster_b: str
    instance_a: str
    instance_b: str
    volume_a: str  # attached to cluster_a, 4 TiB
    volume_free: str  # project alpha, unattached, 2 TiB
    volume_b: str  # project beta, unattached
    rem_pending: str  # manual, PENDING
    rem_cancelled: str  # manual, CANCELLED
    rem_approval: str  # automated, PENDING_APPROVAL
    rem_b: str  # on cluster_b

    def headers(self, who: str | None) -> dict[str, str]:
        if who is None:
            return {}
        return self.engine.headers({"a": self.key_a, "b": self.key_b, "admin": None}[who])

    @property
    def secrets(self) -> list[str]:
        return [self.key_a, self.key_b, self.engine.admin_key]


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _admin(engine: Engine, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _ok(engine.client.post(f"/admin/v1/{path}", headers=engine.headers(), json=body))


def _tenant(engine: Engine, name: str) -> tuple[str, str, str]:
    """A user, a project and a key of that user in that project: (user, project, key)."""
    user = _admin(engine, "users", {"name": name})["id"]
    project = _admin(engine, "projects", {"name": name, "slug": name})["id"]
    key = _admin(engine, "api-keys", {"user_id": user, "project_id": project})["api_key"]
    return user, project, key


def create_body(**overrides: Any) -> dict[str, Any]:
    """A valid ON_DEMAND create in test-1, changed by `overrides` (`DROP` removes a key)."""
    body: dict[str, Any] = {
        "cluster_name": "bad-input",
        "billing_type": "ON_DEMAND",
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "region": "test-1",
        "nvidia_version_id": DRIVER_1,
    }
    for key, value in overrides.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _remediate(engine: Engine, key: str, cluster: str, instance: str) -> str:
    path = f"/v1/compute/clusters/{cluster}/instances/{instance}/remediations"
    body = {"mode": "REMEDIATION_MODE_REBOOT_VM", "reason": "setup"}
    rid: str = _ok(engine.client.post(path, headers=engine.headers(key), json=body))["id"]
    return rid


def build_world(engine: Engine) -> World:
    client = engine.client
    user_a, project_a, key_a = _tenant(engine, "alpha")
    _, project_b, key_b = _tenant(engine, "beta")
    vol = "/v1/compute/clusters/storage/volumes"

    def volume(key: str, name: str, size: int) -> str:
        body = {"volume_name": name, "size_tib": size, "region": "test-1"}
        vid: str = _ok(client.post(vol, headers=engine.headers(key), json=body))["volume_id"]
        return vid

    volume_a = volume(key_a, "data-a", 4)
    volume_free = volume(key_a, "free-a", 2)
    volume_b = volume(key_b, "data-b", 1)
    cluster_a = _ok(
        client.post(
            "/v1/compute/clusters",
            headers={**engine.headers(key_a), "Idempotency-Key": "alpha-1"},
            json=create_body(cluster_name="alpha-1", num_gpus=16, volume_id=volume_a),
        )
    )
    cluster_b = _ok(
        client.post(
            "/v1/compute/clusters",
            headers=engine.headers(key_b),
            json=create_body(cluster_name="beta-1"),
        )
    )
    instance_a = cluster_a["gpu_worker_nodes"][0]["instance_id"]
    instance_b = cluster_b["gpu_worker_nodes"][0]["instance_id"]
    cid_a, cid_b = cluster_a["cluster_id"], cluster_b["cluster_id"]
    rem_cancelled = _remediate(engine, key_a, cid_a, instance_a)
    _ok(
        client.post(
            f"/v1/compute/clusters/{cid_a}/instances/{instance_a}/remediations/"
            f"{rem_cancelled}/cancel",
            headers=engine.headers(key_a),
        )
    )
    rem_pending = _remediate(engine, key_a, cid_a, instance_a)  # a node's one open repair
    # What the health checker leaves behind: an automated remediation awaiting approval.
    other_a = cluster_a["gpu_worker_nodes"][1]["instance_id"]
    rem_approval = _admin(
        engine,
        f"clusters/{cid_a}/instances/{other_a}/recommendations",
        {"mode": "REMEDIATION_MODE_VM_ONLY", "reason": "xid 79"},
    )["id"]
    rem_b = _remediate(engine, key_b, cid_b, instance_b)
    return World(
        engine=engine,
        key_a=key_a,
        key_b=key_b,
        project_a=project_a,
        project_b=project_b,
        user_a=user_a,
        cluster_a=cid_a,
        cluster_b=cid_b,
        instance_a=instance_a,
        instance_b=instance_b,
        volume_a=volume_a,
        volume_free=volume_free,
        volume_b=volume_b,
        rem_pending=rem_pending,
        rem_cancelled=rem_cancelled,
        rem_approval=rem_approval,
        rem_b=rem_b,
    )


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One world for all refusal cases (the `engine` fixture's engine, built once).

    Sharing is sound because every case proves it changed nothing; building a fresh world
    per case would cost ~0.5 s each for no extra coverage.
    """
    engines = make_engine(tmp_path_factory.mktemp("bad_input"))
    yield build_world(next(engines))
    engines.close()


# --- cases ---------------------------------------------------------------------------------

Body = Any | Callable[[World], Any]


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # formatted with the World's fields: "/v1/compute/clusters/{cluster_b}"
    status: int
    json: Body = None
    content: bytes | Callable[[World], Any] | None = None
    who: str | None = "a"  # "a", "b", "admin", or None for no Authorization header
    headers: dict[str, str] | Callable[[World], dict[str, str]] | None = None
    param: str | None = None  # the `param` the envelope must name, when set
    says: tuple[str, ...] = field(default=())  # substrings the message must contain


def _call(value: Any, world: World) -> Any:
    return value(world) if callable(value) else value


CLUSTERS = "/v1/compute/clusters"
VOLUMES = "/v1/compute/clusters/storage/volumes"
REMS_A = "/v1/compute/clusters/{cluster_a}/instances/{instance_a}/remediations"
ALL_REMS_A = "/v1/compute/clusters/{cluster_a}/instances/-/remediations"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _chunks(total: int) -> Iterator[bytes]:
    piece = b" " * 65536
    for _ in range(total // len(piece)):
        yield piece


AUTH_CASES = [
    Case("auth-missing", "GET", CLUSTERS, 401, who=None),
    Case("auth-missing-on-create", "POST", CLUSTERS, 401, who=None, json=create_body()),
    Case(
        "auth-missing-before-body-validation",
        "POST",
        CLUSTERS,
        401,
        who=None,
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    ),
    Case(
        "auth-missing-oversized-body",
        "POST",
        CLUSTERS,
        401,
        who=None,
        content=lambda _: _chunks(2 * MiB),
    ),
    Case(
        "auth-scheme-basic",
        "GET",
        CLUSTERS,
        401,
        who=None,
        headers=lambda w: {"Authorization": f"Basic {w.key_a}"},
    ),
    Case("auth-bearer-empty", "GET", CLUSTERS, 401, who=None, headers={"Authorization": "Bearer "}),
    Case(
        "auth-bearer-no-space",
        "GET",
        CLUSTERS,
        401,
        who=None,
        headers=lambda w: {"Authorization": f"Bearer{w.key_a}"},
    ),
    Case(
        "auth-bearer-garbage",
        "GET",
        CLUSTERS,
        401,
        who=None,
        headers={"Authorization": "Bearer not-a-key"},
    ),
    Case(
        "auth-unknown-key",
        "GET",
        CLUSTERS,
        401,
        who=None,
        headers=lambda _: {"Authorization": f"Bearer {generate_key_text()}"},
    ),
    Case(
        "auth-known-id-wrong-secret",
        "POST",
        CLUSTERS,
        401,
        who=None,
        json=create_body(),
        headers=lambda w: {"Authorization": f"Bearer {w.key_a[:-4]}AAAA"},
    ),
    Case(
        "auth-missing-on-admin", "POST", "/admin/v1/users", 401, who=None, json={"name": "mallory"}
    ),
]

TYPE_CASES = [
    Case("num_gpus-string", "POST", CLUSTERS, 400, create_body(num_gpus="8"), param="num_gpus"),
    Case("num_gpus-float", "POST", CLUSTERS, 400, create_body(num_gpus=8.0), param="num_gpus"),
    Case("num_gpus-bool", "POST", CLUSTERS, 400, create_body(num_gpus=True), param="num_gpus"),
    Case("num_gpus-huge", "POST", CLUSTERS, 400, create_body(num_gpus=2**40 * 8), param="num_gpus"),
    Case("num_gpus-missing", "POST", CLUSTERS, 400, create_body(num_gpus=DROP), param="num_gpus"),
    Case(
        "cluster_name-number",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_name=42),
        param="cluster_name",
    ),
    Case(
        "billing_type-unknown",
        "POST",
        CLUSTERS,
        400,
        create_body(billing_type="MONTHLY"),
        param="billing_type",
    ),
    Case(
        "cluster_type-unknown",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_type="NOMAD"),
        param="cluster_type",
    ),
]

COUNT_CASES = [
    Case("num_gpus-0", "POST", CLUSTERS, 400, create_body(num_gpus=0), param="num_gpus"),
    Case("num_gpus-12", "POST", CLUSTERS, 400, create_body(num_gpus=12), param="num_gpus"),
    Case("num_gpus-negative", "POST", CLUSTERS, 400, create_body(num_gpus=-8), param="num_gpus"),
    Case(
        "num_gpus-not-multiple-of-8",
        "POST",
        CLUSTERS,
        400,
        create_body(num_gpus=17),
        param="num_gpus",
        says=("multiple of 8",),
    ),
    Case(
        "num_preemptible_gpus-4",
        "POST",
        CLUSTERS,
        400,
        create_body(num_preemptible_gpus=4),
        param="num_preemptible_gpus",
    ),
]

CATALOG_CASES = [
    Case(
        "region-unknown",
        "POST",
        CLUSTERS,
        400,
        create_body(region="mars-1"),
        param="region",
        says=("test-1",),
    ),
    Case(
        "gpu_type-not-in-region",
        "POST",
        CLUSTERS,
        400,
        create_body(gpu_type="L40_PCIE"),
        param="gpu_type",
        says=("H100_SXM",),
    ),
    Case(
        "gpu_type-unknown",
        "POST",
        CLUSTERS,
        400,
        create_body(gpu_type="A100_PCIE"),
        param="gpu_type",
    ),
    Case(
        "nvidia_version_id-unknown",
        "POST",
        CLUSTERS,
        400,
        create_body(nvidia_version_id="cu999-drv999"),
        param="nvidia_version_id",
        says=(DRIVER_1,),
    ),
    Case(
        "nvidia_version_id-of-other-region",
        "POST",
        CLUSTERS,
        400,
        create_body(nvidia_version_id="cu126-drv560-ubuntu2204"),
        param="nvidia_version_id",
    ),
    Case(
        "cuda_version-without-driver",
        "POST",
        CLUSTERS,
        400,
        create_body(nvidia_version_id=DROP, cuda_version="12.8"),
        param="nvidia_driver_version",
    ),
    Case(
        "cuda-driver-pair-not-in-catalog",
        "POST",
        CLUSTERS,
        400,
        create_body(nvidia_version_id=DROP, cuda_version="12.6", nvidia_driver_version="560"),
        param="cuda_version",
        says=("12.8/570",),
    ),
]

BILLING_CASES = [
    Case(
        "slurm-without-shm",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_type="SLURM"),
        param="slurm_shm_size_gib",
    ),
    Case(
        "scheduled-without-window",
        "POST",
        CLUSTERS,
        400,
        create_body(billing_type="SCHEDULED_CAPACITY"),
        param="reservation_start_time",
    ),
    Case(
        "scheduled-without-end",
        "POST",
        CLUSTERS,
        400,
        create_body(
            billing_type="SCHEDULED_CAPACITY", reservation_start_time="2026-02-01T00:00:00Z"
        ),
        param="reservation_end_time",
    ),
    Case(
        "scheduled-end-before-start",
        "POST",
        CLUSTERS,
        400,
        create_body(
            billing_type="SCHEDULED_CAPACITY",
            reservation_start_time="2026-03-01T00:00:00Z",
            reservation_end_time="2026-02-01T00:00:00Z",
        ),
        param="reservation_end_time",
    ),
    Case(
        "scheduled-window-in-the-past",
        "POST",
        CLUSTERS,
        400,
        create_body(
            billing_type="SCHEDULED_CAPACITY",
            reservation_start_time="2025-01-01T00:00:00Z",
            reservation_end_time="2025-02-01T00:00:00Z",
        ),
        param="reservation_end_time",
    ),
    Case(
        "timestamp-tomorrow",
        "POST",
        CLUSTERS,
        400,
        create_body(
            billing_type="SCHEDULED_CAPACITY",
            reservation_start_time="tomorrow",
            reservation_end_time="2026-03-01T00:00:00Z",
        ),
        param="reservation_start_time",
        says=("RFC 3339",),
    ),
    Case(
        "timestamp-month-13",
        "POST",
        CLUSTERS,
        400,
        create_body(
            billing_type="SCHEDULED_CAPACITY",
            reservation_start_time="2025-13-01T00:00:00Z",
            reservation_end_time="2026-03-01T00:00:00Z",
        ),
        param="reservation_start_time",
    ),
    Case(
        "timestamp-number",
        "POST",
        CLUSTERS,
        400,
        create_body(
            billing_type="SCHEDULED_CAPACITY",
            reservation_start_time=12345,
            reservation_end_time="2026-03-01T00:00:00Z",
        ),
        param="reservation_start_time",
    ),
    Case(
        "reserved-start-in-year-9999",
        "POST",
        CLUSTERS,
        400,
        create_body(
            billing_type="RESERVED",
            duration_days=90,
            reservation_start_time="9999-12-31T00:00:00Z",
        ),
        param="reservation_start_time",
    ),
    Case(
        "timestamp-offset-out-of-range",
        "POST",
        CLUSTERS,
        400,
        create_body(
            billing_type="SCHEDULED_CAPACITY",
            reservation_start_time="2026-02-01T00:00:00+25:00",
            reservation_end_time="2026-03-01T00:00:00Z",
        ),
        param="reservation_start_time",
    ),
    Case(
        "duration_days-0",
        "POST",
        CLUSTERS,
        400,
        create_body(billing_type="RESERVED", duration_days=0),
        param="duration_days",
    ),
    Case(
        "duration_days-91",
        "POST",
        CLUSTERS,
        400,
        create_body(billing_type="RESERVED", duration_days=91),
        param="duration_days",
    ),
    Case(
        "duration_days-on-demand",
        "POST",
        CLUSTERS,
        400,
        create_body(duration_days=3),
        param="duration_days",
    ),
    Case(
        "cluster_config-without-load_balancer",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_config={"jumphost_enabled": True}),
        param="cluster_config.load_balancer",
    ),
    Case(
        "oidc-http-issuer",
        "POST",
        CLUSTERS,
        400,
        create_body(
            oidc_config={
                "issuer_url": "http://idp.example.com",
                "client_id": "k8s",
                "username_claim": "sub",
                "username_prefix": "oidc:",
                "group_claim": "groups",
                "group_prefix": "oidc:",
            }
        ),
        param="oidc_config.issuer_url",
    ),
]

BODY_CASES = [
    Case(
        "body-not-json",
        "POST",
        CLUSTERS,
        400,
        content=b"cluster_name=x&num_gpus=8",
        headers={"Content-Type": "application/json"},
        says=("JSON",),
    ),
    Case("body-truncated-json", "POST", CLUSTERS, 400, content=b'{"cluster_name": "x",'),
    Case("body-json-array", "POST", CLUSTERS, 400, json=[create_body()], says=("object",)),
    Case("body-json-string", "POST", CLUSTERS, 400, json="create me a cluster"),
    Case("body-deeply-nested", "POST", CLUSTERS, 400, content=b"[" * 5000 + b"]" * 5000),
    Case(
        "body-lone-surrogate",
        "POST",
        CLUSTERS,
        400,
        content=b'{"cluster_name": "a\\ud800b", "billing_type": "ON_DEMAND"}',
    ),
    Case(
        "body-oversized",
        "POST",
        CLUSTERS,
        413,
        json=create_body(
            cluster_config={
                "load_balancer": "NONE",
                "slurm_startup_scripts": {"worker_prolog": "x" * (MiB + 16)},
            }
        ),
    ),
    Case("body-oversized-streamed", "POST", CLUSTERS, 413, content=lambda _: _chunks(2 * MiB)),
    Case(
        "cluster_name-nul",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_name="ab\x00cd"),
        param="cluster_name",
    ),
    Case(
        "cluster_name-empty",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_name=""),
        param="cluster_name",
    ),
    Case(
        "cluster_name-too-long",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_name="c" * 64),
        param="cluster_name",
    ),
    Case(
        "cluster_name-path-traversal",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_name="../../etc/passwd"),
        param="cluster_name",
    ),
    Case(
        "cluster_name-newline",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_name="a\nkind: Config"),
        param="cluster_name",
    ),
]

REFERENCE_CASES = [
    Case(
        "add_on-slurm_web-on-kubernetes",
        "POST",
        CLUSTERS,
        400,
        create_body(add_ons=[{"name": "web", "add_on_type": "slurm_web"}]),
        param="add_ons.0.add_on_type",
    ),
    Case(
        "add_on-unknown-type",
        "POST",
        CLUSTERS,
        400,
        create_body(add_ons=[{"name": "x", "add_on_type": "bitcoin_miner"}]),
        param="add_ons.0.add_on_type",
    ),
    Case(
        "idempotency-key-too-long",
        "POST",
        CLUSTERS,
        400,
        create_body(),
        headers={"Idempotency-Key": "k" * 300},
        param="Idempotency-Key",
    ),
    Case(
        "idempotency-key-reused-for-another-body",
        "POST",
        CLUSTERS,
        409,
        create_body(cluster_name="not-alpha"),
        headers={"Idempotency-Key": "alpha-1"},
        param="Idempotency-Key",
    ),
    Case(
        "volume_id-and-shared_volume",
        "POST",
        CLUSTERS,
        400,
        lambda w: create_body(
            volume_id=w.volume_free,
            shared_volume={"volume_name": "v2", "size_tib": 1, "region": "test-1"},
        ),
        param="shared_volume",
    ),
    Case(
        "volume_id-of-other-project",
        "POST",
        CLUSTERS,
        400,
        lambda w: create_body(volume_id=w.volume_b),
        param="volume_id",
    ),
    Case(
        "volume_id-already-attached",
        "POST",
        CLUSTERS,
        400,
        lambda w: create_body(volume_id=w.volume_a),
        param="volume_id",
    ),
    Case(
        "project_id-of-other-project",
        "POST",
        CLUSTERS,
        404,
        lambda w: create_body(project_id=w.project_b),
        param="project_id",
    ),
    Case(
        "capacity-exhausted",
        "POST",
        CLUSTERS,
        409,
        create_body(num_gpus=200),
        says=("25 nodes", "13 available"),
    ),
]

CLUSTER_ID_CASES = [
    Case("get-other-projects-cluster", "GET", CLUSTERS + "/{cluster_b}", 404),
    Case("put-other-projects-cluster", "PUT", CLUSTERS + "/{cluster_b}", 404, {"num_gpus": 16}),
    Case("delete-other-projects-cluster", "DELETE", CLUSTERS + "/{cluster_b}", 404),
    Case("get-unknown-cluster", "GET", CLUSTERS + "/no-such-cluster", 404),
    Case("put-unknown-cluster", "PUT", CLUSTERS + "/no-such-cluster", 404, {"num_gpus": 16}),
    Case("delete-unknown-cluster", "DELETE", CLUSTERS + "/no-such-cluster", 404),
    Case("get-cluster-id-nul", "GET", CLUSTERS + "/abc%00def", 404),
    Case("get-volume-id-nul", "GET", VOLUMES + "/abc%00def", 404, param="volume_id"),
    Case(
        "remediation-instance-id-nul",
        "GET",
        "/v1/compute/clusters/{cluster_a}/instances/a%00b/remediations",
        404,
        param="instance_id",
    ),
    Case(
        "remediation-id-nul",
        "POST",
        ALL_REMS_A + "/a%00b/cancel",
        404,
        param="remediation_id",
    ),
    Case(
        "fleet-host-filter-nul",
        "GET",
        "/admin/v1/fleet/hosts?block=%00",
        400,
        who="admin",
        param="block",
        says=("NUL",),
    ),
    Case(
        "remediation-state-filter-nul",
        "GET",
        ALL_REMS_A + "?state=PENDING&state=a%00",
        400,
        param="state",
    ),
    Case("cluster-list-query-nul", "GET", CLUSTERS + "?page_token=%00", 400, param="page_token"),
    Case("get-cluster-id-10k", "GET", CLUSTERS + "/" + "x" * 10_000, 404),
    Case(
        "put-cluster_type-change",
        "PUT",
        CLUSTERS + "/{cluster_a}",
        400,
        {"cluster_type": "SLURM"},
        param="cluster_type",
    ),
    Case(
        "put-reservation_end_time-on-demand",
        "PUT",
        CLUSTERS + "/{cluster_a}",
        400,
        {"reservation_end_time": "2026-06-01T00:00:00Z"},
        param="reservation_end_time",
    ),
    Case(
        "put-num_gpus-7", "PUT", CLUSTERS + "/{cluster_a}", 400, {"num_gpus": 7}, param="num_gpus"
    ),
    Case(
        "put-num_gpus-string",
        "PUT",
        CLUSTERS + "/{cluster_a}",
        400,
        {"num_gpus": "24"},
        param="num_gpus",
    ),
    Case("put-body-array", "PUT", CLUSTERS + "/{cluster_a}", 400, [{"num_gpus": 24}]),
    Case(
        "put-scale-beyond-capacity",
        "PUT",
        CLUSTERS + "/{cluster_a}",
        409,
        {"num_gpus": 136},
        says=("available",),
    ),
    Case(
        "put-add_on-unknown",
        "PUT",
        CLUSTERS + "/{cluster_a}",
        400,
        {"add_ons": [{"name": "nope"}]},
        param="add_ons.0.name",
    ),
]

STORAGE_CASES = [
    Case(
        "volume-project_id-of-other-project",
        "POST",
        VOLUMES,
        404,
        lambda w: {
            "volume_name": "v",
            "size_tib": 1,
            "region": "test-1",
            "project_id": w.project_b,
        },
        param="project_id",
    ),
    Case(
        "volume-size-0",
        "POST",
        VOLUMES,
        400,
        {"volume_name": "v", "size_tib": 0, "region": "test-1"},
        param="size_tib",
    ),
    Case(
        "volume-size-negative",
        "POST",
        VOLUMES,
        400,
        {"volume_name": "v", "size_tib": -5, "region": "test-1"},
        param="size_tib",
    ),
    Case(
        "volume-size-string",
        "POST",
        VOLUMES,
        400,
        {"volume_name": "v", "size_tib": "10", "region": "test-1"},
        param="size_tib",
    ),
    Case(
        "volume-unknown-region",
        "POST",
        VOLUMES,
        400,
        {"volume_name": "v", "size_tib": 1, "region": "mars-1"},
        param="region",
    ),
    Case(
        "volume-instance_cluster_id-of-other-project",
        "POST",
        VOLUMES,
        404,
        lambda w: {
            "volume_name": "v",
            "size_tib": 1,
            "region": "test-1",
            "instance_cluster_id": w.cluster_b,
        },
        param="instance_cluster_id",
    ),
    Case(
        "volume-shrink",
        "PUT",
        VOLUMES,
        400,
        lambda w: {"volume_id": w.volume_a, "size_tib": 2},
        param="size_tib",
    ),
    Case(
        "volume-resize-negative",
        "PUT",
        VOLUMES,
        400,
        lambda w: {"volume_id": w.volume_free, "size_tib": -1},
        param="size_tib",
    ),
    Case("volume-resize-without-id", "PUT", VOLUMES, 400, {"size_tib": 8}, param="volume_id"),
    Case(
        "volume-resize-other-project",
        "PUT",
        VOLUMES,
        404,
        lambda w: {"volume_id": w.volume_b, "size_tib": 8},
    ),
    Case("volume-delete-attached", "DELETE", VOLUMES + "/{volume_a}", 409, says=("attached",)),
    Case("volume-get-unknown", "GET", VOLUMES + "/no-such-volume", 404),
    Case("volume-delete-unknown", "DELETE", VOLUMES + "/no-such-volume", 404),
    Case("volume-get-other-project", "GET", VOLUMES + "/{volume_b}", 404),
    Case("volume-delete-other-project", "DELETE", VOLUMES + "/{volume_b}", 404),
]

REMEDIATION_CASES = [
    Case(
        "remediation-client-id-with-slash",
        "POST",
        REMS_A + "?remediation_id=a%2Fb",
        400,
        {"mode": "REMEDIATION_MODE_REBOOT_VM"},
        param="remediation_id",
    ),
    Case(
        "remediation-client-id-too-long",
        "POST",
        REMS_A + "?remediation_id=" + "r" * 65,
        400,
        {"mode": "REMEDIATION_MODE_REBOOT_VM"},
        param="remediation_id",
    ),
    Case(
        "remediation-unknown-instance",
        "POST",
        "/v1/compute/clusters/{cluster_a}/instances/no-such-instance/remediations",
        404,
        {"mode": "REMEDIATION_MODE_REBOOT_VM"},
        param="instance_id",
    ),
    Case(
        "remediation-instance-of-other-cluster",
        "POST",
        "/v1/compute/clusters/{cluster_a}/instances/{instance_b}/remediations",
        404,
        {"mode": "REMEDIATION_MODE_REBOOT_VM"},
        param="instance_id",
    ),
    Case(
        "remediation-wildcard-instance-create",
        "POST",
        ALL_REMS_A,
        400,
        {"mode": "REMEDIATION_MODE_REBOOT_VM"},
        param="instance_id",
    ),
    Case(
        "remediation-mode-unknown",
        "POST",
        REMS_A,
        400,
        {"mode": "REMEDIATION_MODE_PRAY"},
        param="mode",
    ),
    Case("remediation-mode-missing", "POST", REMS_A, 400, {"reason": "broken"}, param="mode"),
    Case(
        "remediation-reason-control-chars",
        "POST",
        REMS_A,
        400,
        {"mode": "REMEDIATION_MODE_REBOOT_VM", "reason": "ok\x1b[2Jgone"},
        param="reason",
    ),
    Case(
        "remediation-on-other-projects-cluster",
        "POST",
        "/v1/compute/clusters/{cluster_b}/instances/{instance_b}/remediations",
        404,
        {"mode": "REMEDIATION_MODE_REBOOT_VM"},
    ),
    Case(
        "remediation-list-other-projects-cluster",
        "GET",
        "/v1/compute/clusters/{cluster_b}/instances/-/remediations",
        404,
    ),
    Case(
        "remediation-get-other-projects",
        "GET",
        "/v1/compute/clusters/{cluster_b}/instances/{instance_b}/remediations/{rem_b}",
        404,
    ),
    Case("remediation-get-other-projects-via-own-cluster", "GET", ALL_REMS_A + "/{rem_b}", 404),
    Case(
        "remediation-cancel-other-projects",
        "POST",
        "/v1/compute/clusters/{cluster_b}/instances/-/remediations/{rem_b}/cancel",
        404,
    ),
    Case(
        "remediation-approve-other-projects-via-own-cluster",
        "POST",
        ALL_REMS_A + "/{rem_b}/approve",
        404,
        {},
    ),
    Case(
        "remediation-unknown-cluster",
        "GET",
        "/v1/compute/clusters/no-such-cluster/instances/-/remediations",
        404,
    ),
    Case(
        "remediation-approve-pending",
        "POST",
        ALL_REMS_A + "/{rem_pending}/approve",
        400,
        {"comment": "lgtm"},
    ),
    Case(
        "remediation-reject-pending",
        "POST",
        ALL_REMS_A + "/{rem_pending}/reject",
        400,
        {"comment": "no"},
    ),
    Case("remediation-cancel-cancelled", "POST", ALL_REMS_A + "/{rem_cancelled}/cancel", 400),
    Case(
        "remediation-approve-host-power-cycle",
        "POST",
        ALL_REMS_A + "/{rem_approval}/approve",
        400,
        {"mode": "REMEDIATION_MODE_HOST_POWER_CYCLE"},
        param="mode",
    ),
    Case(
        "remediation-approve-comment-number",
        "POST",
        ALL_REMS_A + "/{rem_approval}/approve",
        400,
        {"comment": 7},
        param="comment",
    ),
    Case("remediation-cancel-body-array", "POST", ALL_REMS_A + "/{rem_pending}/cancel", 400, []),
    Case(
        "remediation-list-state-bogus",
        "GET",
        ALL_REMS_A + "?state=PENDING,BOGUS",
        400,
        param="state",
    ),
    Case(
        "remediation-list-mode-bogus",
        "GET",
        ALL_REMS_A + "?mode=REMEDIATION_MODE_X",
        400,
        param="mode",
    ),
    Case(
        "remediation-list-page_size-0", "GET", ALL_REMS_A + "?page_size=0", 400, param="page_size"
    ),
    Case(
        "remediation-list-page_size-abc",
        "GET",
        ALL_REMS_A + "?page_size=abc",
        400,
        param="page_size",
    ),
    Case(
        "remediation-list-page_size-negative",
        "GET",
        ALL_REMS_A + "?page_size=-1",
        400,
        param="page_size",
    ),
    Case(
        "remediation-list-page_size-huge",
        "GET",
        ALL_REMS_A + "?page_size=99999999999999999999",
        400,
        param="page_size",
    ),
    Case(
        "remediation-list-page_token-garbage",
        "GET",
        ALL_REMS_A + "?page_token=%21%21%21",
        400,
        param="page_token",
    ),
    Case(
        "remediation-list-page_token-forged",
        "GET",
        ALL_REMS_A + "?page_token=" + _b64(b"not-a-time|x"),
        400,
        param="page_token",
    ),
    Case(
        "remediation-list-page_token-binary",
        "GET",
        ALL_REMS_A + "?page_token=" + _b64(b"\xff\xfe\x00|"),
        400,
        param="page_token",
    ),
    Case(
        "remediation-list-page_token-nul-id",
        "GET",
        ALL_REMS_A + "?page_token=" + _b64(b"2026-01-01T00:00:00|\x00"),
        400,
        param="page_token",
    ),
    Case(
        "remediation-list-order_by-injection",
        "GET",
        ALL_REMS_A + "?order_by=create_time%3B%20DROP%20TABLE%20remediations",
        400,
        param="order_by",
    ),
]

ADMIN_CASES = [
    Case("admin-users-non-admin", "POST", "/admin/v1/users", 403, {"name": "mallory"}),
    Case(
        "admin-projects-non-admin",
        "POST",
        "/admin/v1/projects",
        403,
        {"name": "evil", "slug": "evil"},
    ),
    Case(
        "admin-api-keys-non-admin-escalation",
        "POST",
        "/admin/v1/api-keys",
        403,
        lambda w: {"user_id": w.user_a, "project_id": w.project_b},
    ),
    Case("admin-fleet-non-admin", "GET", "/admin/v1/fleet/hosts", 403),
    Case("admin-non-admin-bad-body", "POST", "/admin/v1/users", 403, content=b"{oops"),
    Case(
        "admin-users-name-number",
        "POST",
        "/admin/v1/users",
        400,
        {"name": 5},
        who="admin",
        param="name",
    ),
    Case("admin-users-duplicate", "POST", "/admin/v1/users", 409, {"name": "alpha"}, who="admin"),
    Case(
        "admin-projects-bad-slug",
        "POST",
        "/admin/v1/projects",
        400,
        {"name": "x", "slug": "Not A Slug"},
        who="admin",
        param="slug",
    ),
    Case(
        "admin-api-keys-unknown-user",
        "POST",
        "/admin/v1/api-keys",
        404,
        lambda w: {"user_id": "user_nope", "project_id": w.project_a},
        who="admin",
    ),
]

ADMIN_CASES += [
    Case(
        "admin-member-role-unknown",
        "POST",
        "/admin/v1/projects/{project_a}/members",
        400,
        lambda w: {"user_id": w.user_a, "role": "superuser" * 8},
        who="admin",
        param="role",
    ),
    Case(
        "admin-member-project-id-nul",
        "POST",
        "/admin/v1/projects/a%00b/members",
        404,
        lambda w: {"user_id": w.user_a},
        who="admin",
        param="project_id",
    ),
    Case(
        "admin-api-keys-user-id-nul",
        "POST",
        "/admin/v1/api-keys",
        400,
        lambda w: {"user_id": "user\x00x", "project_id": w.project_a},
        who="admin",
        param="user_id",
    ),
    Case(
        "admin-api-keys-name-too-long",
        "POST",
        "/admin/v1/api-keys",
        400,
        lambda w: {"user_id": w.user_a, "project_id": w.project_a, "name": "n" * 200},
        who="admin",
        param="name",
    ),
    Case(
        "admin-recommendation-reason-nul",
        "POST",
        "/admin/v1/clusters/{cluster_a}/instances/{instance_a}/recommendations",
        400,
        {"mode": "REMEDIATION_MODE_REBOOT_VM", "reason": "a\x00b"},
        who="admin",
        param="reason",
    ),
]

ROUTE_CASES = [
    Case("route-unknown", "GET", "/v1/compute/nope", 404),
    Case("route-unknown-version", "GET", "/v9/compute/clusters", 404),
    Case("route-unknown-unauthenticated", "GET", "/v1/compute/nope", 404, who=None),
    Case("route-method-not-allowed", "PATCH", CLUSTERS + "/{cluster_a}", 405, {"num_gpus": 24}),
]

CASES = (
    AUTH_CASES
    + TYPE_CASES
    + COUNT_CASES
    + CATALOG_CASES
    + BILLING_CASES
    + BODY_CASES
    + REFERENCE_CASES
    + CLUSTER_ID_CASES
    + STORAGE_CASES
    + REMEDIATION_CASES
    + ADMIN_CASES
    + ROUTE_CASES
)


# --- the check -----------------------------------------------------------------------------


def send(world: World, case: Case) -> httpx.Response:
    ids = {k: v for k, v in vars(world).items() if isinstance(v, str)}
    headers = world.headers(case.who)
    headers.update(_call(case.headers, world) or {})
    kwargs: dict[str, Any] = {"headers": headers}
    if case.content is not None:
        kwargs["content"] = _call(case.content, world)
    elif case.json is not None:
        kwargs["json"] = _call(case.json, world)
    return world.engine.client.request(case.method, case.path.format(**ids), **kwargs)


def assert_error(response: httpx.Response, status: int, *, secrets: list[str]) -> dict[str, Any]:
    """The spec's error envelope (§1.6), readable and safe, with the retry hint."""
    assert response.status_code < 500, response.text
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    message = error["message"]
    assert isinstance(message, str) and message.strip(), error
    assert message.isprintable(), error
    assert len(message) <= 500, error
    for leak in (
        "Traceback",
        'File "',
        "pydantic",
        "errors.pydantic.dev",
        "input_value",
        "sqlalchemy",
        "SELECT ",
        "0x",
    ):
        assert leak not in message, error
    for secret in secrets:
        assert secret not in response.text
    assert isinstance(error["type"], str) and error["type"], error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error
    assert response.headers.get("x-should-retry") == "false", dict(response.headers)
    return dict(error)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_is_refused_cleanly(shared_world: World, case: Case) -> None:
    world = shared_world
    before = world.engine.dump()
    response = send(world, case)
    error = assert_error(response, case.status, secrets=world.secrets)
    if case.param is not None:
        assert error["param"] == case.param, error
    for fragment in case.says:
        assert fragment in error["message"], error
    assert world.engine.dump() == before


def test_cases_are_many_and_distinct() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


def test_foreign_volume_looks_like_a_missing_one(world: World) -> None:
    """Naming another project's volume reveals nothing an unknown id would not."""
    client, headers = world.engine.client, world.headers("a")
    before = world.engine.dump()
    foreign = client.post(CLUSTERS, headers=headers, json=create_body(volume_id=world.volume_b))
    unknown = client.post(CLUSTERS, headers=headers, json=create_body(volume_id="vol-nope"))
    a = assert_error(foreign, 400, secrets=world.secrets)
    b = assert_error(unknown, 400, secrets=world.secrets)
    assert a["message"].replace(world.volume_b, "ID") == b["message"].replace("vol-nope", "ID")
    assert world.engine.dump() == before


def test_the_base_bodies_are_valid(world: World) -> None:
    """The cases differ from accepted requests only in what they break."""
    client = world.engine.client
    ok = client.post(CLUSTERS, headers=world.headers("a"), json=create_body())
    assert ok.status_code == 200, ok.text
    scheduled = create_body(
        billing_type="SCHEDULED_CAPACITY",
        reservation_start_time="2026-02-01T00:00:00Z",
        reservation_end_time="2026-03-01T00:00:00Z",
    )
    assert client.post(CLUSTERS, headers=world.headers("a"), json=scheduled).status_code == 200
    vol = {"volume_name": "v", "size_tib": 1, "region": "test-1"}
    assert client.post(VOLUMES, headers=world.headers("a"), json=vol).status_code == 200
    approve = ALL_REMS_A.format(**vars(world)) + f"/{world.rem_approval}/approve"
    approved = client.post(
        approve, headers=world.headers("a"), json={"mode": "REMEDIATION_MODE_HOST_AWARE"}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "PENDING"

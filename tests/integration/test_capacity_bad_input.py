"""Bad input to the capacity surface: the admin pool and calendar endpoints, and the
capacity fields of cluster creates and updates. Each case gets its 4xx in the spec's
error envelope and leaves the database exactly as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tests.support.engine import Engine, make_engine

CREATE = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 16,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


@dataclass
class World:
    engine: Engine
    pooled: str  # alpha's ON_DEMAND from the pool, 8 GPUs
    alpha: str
    key_alpha: str
    key_beta: str
    pool: str  # alpha's, rack r01 of test-1, active for a day
    later_pool: str  # alpha's, rack r03 of test-1, from tomorrow
    cluster: str  # alpha's ON_DEMAND, 16 GPUs, no pool
    reserved: str  # alpha's RESERVED for a day, 16 GPUs


def _ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    gen = make_engine(tmp_path_factory.mktemp("capacity-bad-input"))
    engine = next(gen)

    def admin(path: str, body: dict[str, Any]) -> Any:
        return _ok(engine.client.post(f"/admin/v1/{path}", json=body, headers=engine.headers()))

    keys, projects = [], []
    for name in ("alpha", "beta"):
        user = admin("users", {"name": name})["id"]
        project = admin("projects", {"name": name, "slug": name})["id"]
        keys.append(admin("api-keys", {"user_id": user, "project_id": project})["api_key"])
        projects.append(project)
    now = engine.clock.now()
    pool_body = {"name": "p", "region": "test-1", "gpu_type": "H100_SXM"}
    pool = admin(
        "capacity/pools",
        {
            **pool_body,
            "project_id": projects[0],
            "starts_at": now.isoformat(),
            "ends_at": (now + timedelta(days=1)).isoformat(),
            "host_names": [f"test1-r01-0{i}" for i in range(1, 5)],
        },
    )["id"]
    later = admin(
        "capacity/pools",
        {
            **pool_body,
            "project_id": projects[0],
            "starts_at": (now + timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=2)).isoformat(),
            "host_names": [f"test1-r03-0{i}" for i in range(1, 5)],
        },
    )["id"]
    alpha = engine.headers(keys[0])
    cluster = _ok(engine.client.post("/v1/compute/clusters", json=CREATE, headers=alpha))
    reserved = _ok(
        engine.client.post(
            "/v1/compute/clusters",
            json={**CREATE, "billing_type": "RESERVED", "duration_days": 1},
            headers=alpha,
        )
    )
    pooled = _ok(
        engine.client.post(
            "/v1/compute/clusters",
            json={**CREATE, "num_gpus": 8, "capacity_pool_id": pool},
            headers=alpha,
        )
    )
    yield World(
        engine,
        pooled["cluster_id"],
        projects[0],
        keys[0],
        keys[1],
        pool,
        later,
        cluster["cluster_id"],
        reserved["cluster_id"],
    )
    gen.close()


@dataclass
class Case:
    id: str
    status: int
    send: Callable[[World], Any]
    param: str | None = None
    says: str = ""


def _pool_body(w: World, **overrides: Any) -> dict[str, Any]:
    now = w.engine.clock.now()
    body: dict[str, Any] = {
        "name": "bad",
        "region": "test-1",
        "gpu_type": "H100_SXM",
        "project_id": w.alpha,
        "starts_at": now.isoformat(),
        "ends_at": (now + timedelta(hours=5)).isoformat(),
        "num_hosts": 1,
    }
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def pool_post(key: str | None = None, **overrides: Any) -> Callable[[World], Any]:
    def send(w: World) -> Any:
        headers = w.engine.headers(getattr(w, key) if key else None)
        url = "/admin/v1/capacity/pools"
        return w.engine.client.post(url, json=_pool_body(w, **overrides), headers=headers)

    return send


def admin_get(path: str, key: str | None = None, method: str = "GET") -> Callable[[World], Any]:
    def send(w: World) -> Any:
        headers = w.engine.headers(getattr(w, key) if key else None)
        return w.engine.client.request(method, f"/admin/v1/capacity/{path}", headers=headers)

    return send


def create(key: str = "key_alpha", **fields: Any) -> Callable[[World], Any]:
    def send(w: World) -> Any:
        body = {
            **CREATE,
            **{
                k: getattr(w, v[1:]) if v == "@pool" or v == "@later_pool" else v
                for k, v in fields.items()
            },
        }
        return w.engine.client.post(
            "/v1/compute/clusters", json=body, headers=w.engine.headers(getattr(w, key))
        )

    return send


def scheduled(hours: tuple[float, float], num_gpus: int) -> Callable[[World], Any]:
    def send(w: World) -> Any:
        now = w.engine.clock.now()
        body = {
            **CREATE,
            "num_gpus": num_gpus,
            "billing_type": "SCHEDULED_CAPACITY",
            "reservation_start_time": (now + timedelta(hours=hours[0])).isoformat(),
            "reservation_end_time": (now + timedelta(hours=hours[1])).isoformat(),
        }
        return w.engine.client.post(
            "/v1/compute/clusters", json=body, headers=w.engine.headers(w.key_alpha)
        )

    return send


def update(which: str, body: Callable[[World], dict[str, Any]]) -> Callable[[World], Any]:
    def send(w: World) -> Any:
        url = f"/v1/compute/clusters/{getattr(w, which)}"
        return w.engine.client.put(url, json=body(w), headers=w.engine.headers(w.key_alpha))

    return send


CASES = [
    Case("pool-non-admin", 403, pool_post("key_alpha")),
    Case("pool-missing-name", 400, pool_post(name=None), param="name"),
    Case("pool-unknown-field", 400, pool_post(colour="red")),
    Case("pool-bad-datetime", 400, pool_post(starts_at="tomorrow"), param="starts_at"),
    Case(
        "pool-ends-before-start",
        400,
        lambda w: pool_post(
            ends_at=w.engine.clock.now().isoformat(),
            starts_at=(w.engine.clock.now() + timedelta(hours=1)).isoformat(),
        )(w),
        param="ends_at",
    ),
    Case(
        "pool-ended-already",
        400,
        lambda w: pool_post(
            starts_at=(w.engine.clock.now() - timedelta(hours=2)).isoformat(),
            ends_at=(w.engine.clock.now() - timedelta(hours=1)).isoformat(),
        )(w),
        param="ends_at",
    ),
    Case("pool-two-owners", 400, pool_post(organization_id="org-default"), param="project_id"),
    Case("pool-no-owner", 400, pool_post(project_id=None), param="project_id"),
    Case("pool-unknown-project", 404, pool_post(project_id="nope"), param="project_id"),
    Case("pool-unknown-region", 400, pool_post(region="mars-1"), param="region"),
    Case("pool-gpu-not-in-region", 400, pool_post(gpu_type="L40_PCIE")),
    Case("pool-bad-gpu-type", 400, pool_post(gpu_type="TPU"), param="gpu_type"),
    Case("pool-hosts-and-count", 400, pool_post(host_names=["test1-r02-01"]), param="host_names"),
    Case("pool-zero-hosts", 400, pool_post(num_hosts=0), param="num_hosts"),
    Case(
        "pool-unknown-host",
        400,
        pool_post(num_hosts=None, host_names=["test9-r01-01"]),
        param="host_names",
    ),
    Case(
        "pool-host-in-another-pool",
        409,
        pool_post(num_hosts=None, host_names=["test1-r01-01"]),
        param="host_names",
    ),
    Case("pool-more-hosts-than-free", 409, pool_post(num_hosts=40), says="available"),
    Case("pool-get-unknown", 404, admin_get("pools/pool-nope")),
    Case("pool-delete-unknown", 404, admin_get("pools/pool-nope", method="DELETE")),
    Case("pool-list-non-admin", 403, admin_get("pools", key="key_beta")),
    Case("calendar-non-admin", 403, admin_get("calendar", key="key_alpha")),
    Case("calendar-unknown-region", 400, admin_get("calendar?region=mars-1"), param="region"),
    Case("calendar-bad-gpu-type", 400, admin_get("calendar?gpu_type=TPU"), param="gpu_type"),
    Case("create-unknown-pool", 404, create(capacity_pool_id="pool-nope"), "capacity_pool_id"),
    Case(
        "create-in-another-projects-pool",
        403,
        create(key="key_beta", capacity_pool_id="@pool"),
        param="capacity_pool_id",
    ),
    Case(
        "create-before-the-pool-starts",
        400,
        create(capacity_pool_id="@later_pool"),
        param="capacity_pool_id",
        says="active from",
    ),
    Case(
        "create-pool-in-another-region",
        400,
        create(
            capacity_pool_id="@pool",
            region="test-2",
            gpu_type="L40_PCIE",
            nvidia_version_id="cu126-drv560-ubuntu2204",
        ),
        param="capacity_pool_id",
    ),
    Case(
        "create-more-pool-gpus-than-the-pool",
        409,
        create(capacity_pool_id="@pool", num_gpus=48, num_capacity_pool_gpus=48),
        param="num_capacity_pool_gpus",
    ),
    Case("create-pool-gpus-without-pool", 400, create(num_capacity_pool_gpus=8)),
    Case("create-preemptible-not-multiple", 400, create(num_preemptible_gpus=4)),
    Case("create-preemptible-negative", 400, create(num_preemptible_gpus=-8)),
    Case("scheduled-beyond-free-hosts", 409, scheduled((1, 3), 40), says="available"),
    Case(
        "scale-up-beyond-capacity",
        409,
        update("cluster", lambda w: {"num_gpus": 80}),
    ),
    Case(
        "extend-on-demand",
        400,
        update(
            "cluster",
            lambda w: {
                "reservation_end_time": (w.engine.clock.now() + timedelta(days=3)).isoformat()
            },
        ),
        param="reservation_end_time",
    ),
    Case(
        "pool-gpus-on-a-cluster-without-pool",
        400,
        update("reserved", lambda w: {"num_capacity_pool_gpus": 8}),
        param="num_capacity_pool_gpus",
    ),
    Case(
        "pool-gpus-changed-on-a-started-cluster",
        400,
        update("pooled", lambda w: {"num_capacity_pool_gpus": 0}),
        param="num_capacity_pool_gpus",
        says="before a scheduled cluster starts",
    ),
    Case(
        "preemptible-update-not-multiple",
        400,
        update("cluster", lambda w: {"num_preemptible_gpus": 12}),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_capacity_input_is_refused_cleanly_and_changes_nothing(world: World, case: Case):
    before = world.engine.dump()
    response = case.send(world)
    assert response.status_code == case.status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in error["message"] and "pydantic" not in error["message"]
    if case.param is not None:
        assert error["param"] == case.param, error
    assert case.says in error["message"], error
    assert world.engine.dump() == before

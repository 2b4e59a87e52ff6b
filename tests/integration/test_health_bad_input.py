"""Bad input to the health API: a clear 4xx in the spec's error envelope, nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_remediation_execution import hosts
from tests.support.engine import Engine

CASES: list[tuple[str, str, Any, int]] = [
    ("post", "/admin/v1/health/events", {"kind": "xid", "xid_code": 79}, 400),
    ("post", "/admin/v1/health/events", {"host_name": "{host}", "kind": "xid"}, 400),
    ("post", "/admin/v1/health/events", {"host_name": "{host}", "kind": "meteor"}, 400),
    ("post", "/admin/v1/health/events", {"host_name": "nope", "kind": "ecc"}, 404),
    ("post", "/admin/v1/health/events", {"instance_id": "nope", "kind": "ecc"}, 404),
    ("post", "/admin/v1/health/events", {"host_name": "{host}", "kind": "ecc", "x": 1}, 400),
    (
        "post",
        "/admin/v1/health/events",
        {"host_name": "{host}", "kind": "xid", "xid_code": -1},
        400,
    ),
    ("post", "/admin/v1/health/events", [1, 2], 400),
    ("post", "/admin/v1/health/events/nope/resolve", None, 404),
    (
        "post",
        "/admin/v1/health/checks",
        {"host_name": "{host}", "check": "dcgm_diag", "level": 5},
        400,
    ),
    (
        "post",
        "/admin/v1/health/checks",
        {"host_name": "{host}", "check": "gpu_burn", "level": 2},
        400,
    ),
    ("post", "/admin/v1/health/checks", {"host_name": "{host}", "check": "fsck"}, 400),
    ("get", "/admin/v1/health/checks/nope", None, 404),
    ("post", "/admin/v1/fleet/hosts/{host}/faults", {"kind": "xid"}, 400),
    ("post", "/admin/v1/fleet/hosts/nope/faults", {"kind": "ecc"}, 404),
    ("post", "/admin/v1/fleet/hosts/{host}/faults", {"kind": "ecc", "fixed_by": "prayer"}, 400),
    ("put", "/admin/v1/clusters/nope/remediation-policy", {"auto_approve": True}, 404),
    ("put", "/admin/v1/projects/nope/remediation-policy", {"auto_approve": True}, 404),
    ("put", "/admin/v1/projects/nope/remediation-policy", {"auto_approve": "yes"}, 400),
    ("get", "/admin/v1/clusters/nope/health", None, 404),
]


def fill(value: Any, host: str) -> Any:
    if isinstance(value, str):
        return value.replace("{host}", host)
    if isinstance(value, dict):
        return {k: fill(v, host) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "body", "status"), CASES)
def test_bad_health_requests_are_refused_and_change_nothing(
    engine: Engine, method: str, path: str, body: Any, status: int
):
    host = sorted(hosts(engine))[0]
    before = engine.dump()
    kwargs: dict[str, Any] = {"headers": engine.headers()}
    if body is not None:
        kwargs["json"] = fill(body, host)
    response = engine.client.request(method.upper(), fill(path, host), **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in error["message"]
    assert engine.dump() == before


def test_the_health_api_is_for_admin_keys_only(engine: Engine):
    from clusterplane.services.access.auth import generate_key_text

    project = engine.client.post(
        "/admin/v1/projects", json={"name": "p", "slug": "p"}, headers=engine.headers()
    ).json()
    user = engine.client.post(
        "/admin/v1/users", json={"name": "u"}, headers=engine.headers()
    ).json()
    key = engine.client.post(
        "/admin/v1/api-keys",
        json={"user_id": user["id"], "project_id": project["id"]},
        headers=engine.headers(),
    ).json()["api_key"]
    assert generate_key_text() != key
    before = engine.dump()
    for method, path in (("POST", "/admin/v1/health/events"), ("GET", "/admin/v1/health/checks")):
        response = engine.client.request(
            method, path, json={"host_name": "x", "kind": "ecc"}, headers=engine.headers(key)
        )
        assert response.status_code == 403, response.text
    assert engine.dump() == before

"""What the server shows to anyone who asks: no redirect built from the `Host` header,
and the admin API's description only to admin keys (the public API's stays open).

Paths never carry a trailing slash (spec §1.1, §9): one gets a 404 in the spec's envelope,
not a redirect to an address the client chose.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_bad_input import assert_error
from tests.support.engine import Engine

EVIL_HOST = "attacker.example:666"


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/v1/compute/clusters/"),
        ("POST", "/v1/compute/clusters/"),
        ("GET", "/v1/compute/clusters/storage/volumes/"),
        ("GET", "/v1/compute/regions/"),
        ("GET", "/admin/v1/fleet/hosts/"),
        ("GET", "/v3/whoami/"),
    ],
)
def test_a_trailing_slash_is_not_redirected_to_the_callers_host(
    engine: Engine, method: str, path: str
):
    response = engine.client.request(
        method,
        path,
        headers={**engine.headers(), "Host": EVIL_HOST},
        follow_redirects=False,
    )
    assert "location" not in response.headers, dict(response.headers)
    assert_error(response, 404, secrets=[engine.admin_key])
    assert "attacker" not in response.text


def test_a_trailing_slash_on_a_cluster_id_is_not_redirected(engine: Engine):
    created = engine.client.post(
        "/v1/compute/clusters",
        headers=engine.headers(),
        json={
            "cluster_name": "slash",
            "billing_type": "ON_DEMAND",
            "gpu_type": "H100_SXM",
            "num_gpus": 8,
            "region": "test-1",
            "nvidia_version_id": "cu128-drv570-ubuntu2204",
        },
    ).json()
    response = engine.client.get(
        f"/v1/compute/clusters/{created['cluster_id']}/",
        headers={**engine.headers(), "Host": EVIL_HOST},
        follow_redirects=False,
    )
    assert "location" not in response.headers
    assert response.status_code == 404


def _paths(engine: Engine, headers: dict[str, str]) -> dict[str, Any]:
    response = engine.client.get("/openapi.json", headers=headers)
    assert response.status_code == 200, response.text
    paths: dict[str, Any] = response.json()["paths"]
    return paths


def _tenant_key(engine: Engine) -> str:
    def admin(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = engine.client.post(f"/admin/v1/{path}", headers=engine.headers(), json=body)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    user = admin("users", {"name": "reader"})["id"]
    project = admin("projects", {"name": "reader", "slug": "reader"})["id"]
    key: str = admin("api-keys", {"user_id": user, "project_id": project})["api_key"]
    return key


def test_the_public_api_description_is_open_and_lists_no_admin_operation(engine: Engine):
    anonymous = engine.client.get("/openapi.json")
    assert anonymous.status_code == 200
    assert "/v1/compute/clusters" in anonymous.json()["paths"]
    assert "/admin/" not in anonymous.text
    schemas = anonymous.json()["components"]["schemas"]
    assert "CreateRecommendation" not in schemas  # an admin body's model stays hidden
    tenant = _paths(engine, engine.headers(_tenant_key(engine)))
    assert not [p for p in tenant if p.startswith("/admin/")]


def test_the_admin_api_description_is_served_to_admin_keys(engine: Engine):
    paths = _paths(engine, engine.headers())
    assert "/admin/v1/fleet/hosts" in paths
    assert "/v1/compute/clusters" in paths


def test_an_unknown_key_gets_no_api_description(engine: Engine):
    response = engine.client.get("/openapi.json", headers={"Authorization": "Bearer nope"})
    assert_error(response, 401, secrets=[engine.admin_key])


def test_the_docs_page_shows_the_public_description(engine: Engine):
    response = engine.client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text
    assert "/admin/" not in response.text

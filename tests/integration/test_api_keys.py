"""API keys end: the operator lists keys (never their secrets), gives a key an expiry and
revokes it; a revoked key stops working at once on the server that revoked it and within
`server.caller_cache_seconds` on every other replica."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from clusterplane.clock import ManualClock
from clusterplane.errors import InvalidRequest
from tests.support.engine import Engine, make_engine
from tests.support.server import SMALL_FLEET, ServerProcess

CACHE_BOUND = 2.0  # ServerSettings.caller_cache_seconds


def user_and_project(
    client: httpx.Client | TestClient, headers: dict[str, str] | None = None
) -> tuple[str, str]:
    user = client.post("/admin/v1/users", json={"name": "u"}, headers=headers).json()["id"]
    project = client.post(
        "/admin/v1/projects", json={"name": "p", "slug": "p"}, headers=headers
    ).json()["id"]
    return user, project


def test_a_key_stops_working_when_it_expires_by_the_wall_clock(tmp_path: Path):
    wall = ManualClock(datetime.now(UTC))
    for engine in make_engine(tmp_path, wall_clock=wall):
        user, project = user_and_project(engine.client, engine.headers())
        created = engine.client.post(
            "/admin/v1/api-keys",
            json={"user_id": user, "project_id": project, "expires_in_seconds": 3600},
            headers=engine.headers(),
        )
        assert created.status_code == 200, created.text
        key = created.json()["api_key"]
        assert engine.client.get("/v1/whoami", headers=engine.headers(key)).status_code == 200
        engine.clock.advance(10 * 86400)  # fleet time does not matter
        assert engine.client.get("/v1/whoami", headers=engine.headers(key)).status_code == 200
        wall.advance(3600)
        refused = engine.client.get("/v1/whoami", headers=engine.headers(key))
        assert refused.status_code == 401, "even while the caller cache holds it"
        assert refused.json()["error"]["message"] == "this API key has expired"
        listed = engine.client.get(
            "/admin/v1/api-keys", params={"user_id": user}, headers=engine.headers()
        ).json()["api_keys"]
        assert [k["status"] for k in listed] == ["expired"]


def test_keys_are_listed_without_secrets_and_a_revoked_key_is_refused_at_once(engine: Engine):
    user, project = user_and_project(engine.client, engine.headers())
    created = engine.client.post(
        "/admin/v1/api-keys",
        json={"user_id": user, "project_id": project, "name": "ci"},
        headers=engine.headers(),
    ).json()
    key = created["api_key"]
    assert engine.client.get("/v1/whoami", headers=engine.headers(key)).status_code == 200
    listed = engine.client.get("/admin/v1/api-keys", headers=engine.headers())
    assert listed.status_code == 200
    entries = {k["id"]: k for k in listed.json()["api_keys"]}
    assert set(entries[created["id"]]) == {
        "id", "name", "user_id", "project_id", "is_admin", "status", "created_at",
        "expires_at", "revoked_at",
    }  # fmt: skip
    assert entries[created["id"]]["status"] == "active"
    assert key.split("_", 3)[3] not in listed.text  # the secret (may hold "_")
    revoked = engine.client.post(
        f"/admin/v1/api-keys/{created['id']}/revoke", headers=engine.headers()
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]
    assert engine.client.get("/v1/whoami", headers=engine.headers(key)).status_code == 401
    missing = engine.client.post("/admin/v1/api-keys/key_nope/revoke", headers=engine.headers())
    assert missing.status_code == 404
    outsider = engine.client.get("/admin/v1/api-keys", headers=engine.headers(key))
    assert outsider.status_code == 401


def test_a_key_revoked_on_one_replica_stops_working_on_the_other_within_the_cache_bound(
    tmp_path: Path,
):
    first = ServerProcess(tmp_path, fleet=SMALL_FLEET)
    second = ServerProcess(tmp_path, fleet=SMALL_FLEET, database_url=first.database_url)
    second.api_key = first.api_key
    with first, second, first.client() as one, second.client() as two:
        user, project = user_and_project(one)
        created = one.post("/admin/v1/api-keys", json={"user_id": user, "project_id": project})
        key_id, key = created.json()["id"], created.json()["api_key"]
        bearer = {"Authorization": f"Bearer {key}"}
        assert two.get("/v1/whoami", headers=bearer).status_code == 200  # now cached there
        assert one.post(f"/admin/v1/api-keys/{key_id}/revoke").status_code == 200
        revoked_at = time.monotonic()
        assert one.get("/v1/whoami", headers=bearer).status_code == 401
        while two.get("/v1/whoami", headers=bearer).status_code == 200:
            assert time.monotonic() - revoked_at < CACHE_BOUND + 1.0, "past the stated bound"
            time.sleep(0.05)
        assert two.get("/v1/whoami", headers=bearer).status_code == 401


def test_a_bad_expiry_is_a_400_and_issues_no_key(engine: Engine):
    user, project = user_and_project(engine.client, engine.headers())
    before = engine.table_counts()
    for bad in (0, 59, -5, "3600", 1.5, 10**12, True):
        response = engine.client.post(
            "/admin/v1/api-keys",
            json={"user_id": user, "project_id": project, "expires_in_seconds": bad},
            headers=engine.headers(),
        )
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["param"] == "expires_in_seconds"
    assert engine.table_counts() == before


def test_a_revoked_bootstrap_key_stays_revoked_when_the_server_restarts_with_it(
    tmp_path: Path,
):
    chosen = "an-operator-chosen-admin-key-for-restarts"
    for engine in make_engine(tmp_path, admin_key=chosen):
        me = engine.client.get("/v3/whoami", headers=engine.headers()).json()["api_key"]["id"]
        spare = engine.client.post(
            "/admin/v1/api-keys",
            json={"user_id": user_of(engine), "project_id": "proj_default"},
            headers=engine.headers(),
        ).json()["api_key"]
        revoked = engine.client.post(f"/admin/v1/api-keys/{me}/revoke", headers=engine.headers())
        assert revoked.status_code == 200
        assert engine.client.get("/v1/whoami", headers=engine.headers()).status_code == 401
        url = engine.database_url
        engine.app.engine.dispose()
    for restarted in make_engine(tmp_path, database_url=url, admin_key=chosen):
        assert restarted.client.get("/v1/whoami", headers=restarted.headers()).status_code == 401
        assert (
            restarted.client.get("/v1/whoami", headers=restarted.headers(spare)).status_code == 200
        )


def user_of(engine: Engine) -> str:
    return str(engine.client.get("/v1/whoami", headers=engine.headers()).json()["user_id"])


def test_an_admin_key_naming_a_registered_id_with_another_secret_stops_the_start(
    engine: Engine, tmp_path: Path
):
    url = engine.database_url
    impostor = engine.admin_key[:24] + "x" * 40  # same key id, another secret
    with pytest.raises(InvalidRequest, match="holds with another secret"):
        next(make_engine(tmp_path, database_url=url, admin_key=impostor))

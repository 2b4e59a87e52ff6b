"""What a server keeps secret: the admin key is printed only when the server generated it,
the SQLite files and the state folder are the owner's alone, and no API key can be
tested offline from the database or any response (salted hashes, random ids)."""

from __future__ import annotations

import hashlib
import re
import stat
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, Table

from clusterplane.db.engine import MIGRATIONS_DIR, make_engine
from clusterplane.services.access.auth import generate_key_text
from tests.support.databases import backend, fresh_database_url
from tests.support.engine import Engine
from tests.support.engine import make_engine as make_test_engine
from tests.support.server import SMALL_FLEET, ServerProcess

GENERATED = re.compile(r"cp_key_[0-9a-f]{16}_[A-Za-z0-9_-]{20,}")
CHOSEN = "correct-horse-battery-staple-operator-key"
CREATE = {
    "cluster_name": "files",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def test_an_admin_key_from_the_environment_is_never_printed(tmp_path: Path):
    server = ServerProcess(tmp_path, fleet=SMALL_FLEET)
    for _ in range(2):  # a first start registers it, a second finds it
        with server, server.client() as client:
            assert client.get("/v1/whoami").status_code == 200
    log = server.log_path.read_text()
    assert server.api_key is not None and server.api_key not in log
    assert "CLUSTERPLANE_ADMIN_API_KEY" in log


def test_a_generated_admin_key_is_printed_on_the_first_start_only(tmp_path: Path):
    server = ServerProcess(tmp_path, fleet=SMALL_FLEET, admin_key=None)
    with server:
        first = server.log_path.read_text()
        keys = set(GENERATED.findall(first))
        assert len(keys) == 1, first
        (key,) = keys
        with server.client(key) as client:
            assert client.get("/v1/whoami").status_code == 200
    with server:
        pass
    log = server.log_path.read_text()
    assert log.count(key) == first.count(key), "not printed again"
    assert set(GENERATED.findall(log)) == {key}


@pytest.mark.skipif(backend() != "sqlite", reason="file modes of the SQLite database")
def test_the_database_its_journal_files_and_the_state_folder_are_the_owners_alone(
    tmp_path: Path,
):
    state = tmp_path / ".clusterplane"
    state.mkdir(mode=0o755)  # as an earlier version left it
    state.chmod(0o755)
    server = ServerProcess(
        tmp_path,
        fleet=SMALL_FLEET,
        credentials_key=None,
        database_url=f"sqlite:///{state / 'cp.db'}",
    )
    with server, server.client() as client:
        assert client.post("/v1/compute/clusters", json=CREATE).status_code == 200
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode)
            for path in state.iterdir()
            if path.name.startswith("cp.db") or path.name == "credentials-key"
        }
    assert modes == {
        "cp.db": 0o600,
        "cp.db-wal": 0o600,
        "cp.db-shm": 0o600,
        "credentials-key": 0o600,
    }
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def _issue_user_key(engine: Engine) -> tuple[str, str]:
    admin = engine.headers()
    user = engine.client.post("/admin/v1/users", json={"name": "u"}, headers=admin).json()["id"]
    project = engine.client.post(
        "/admin/v1/projects", json={"name": "p", "slug": "p"}, headers=admin
    ).json()["id"]
    issued = engine.client.post(
        "/admin/v1/api-keys", json={"user_id": user, "project_id": project}, headers=admin
    )
    assert issued.status_code == 200, issued.text
    key: str = issued.json()["api_key"]
    return key, key.split("_", 3)[3]


def test_no_response_and_no_stored_row_holds_hash_material_of_an_api_key(tmp_path: Path):
    for engine in make_test_engine(tmp_path, admin_key=CHOSEN):
        user_key, user_secret = _issue_user_key(engine)
        shown = ""
        for key in (CHOSEN, user_key):
            for path in ("/v1/whoami", "/v3/whoami"):
                response = engine.client.get(path, headers=engine.headers(key))
                assert response.status_code == 200, response.text
                shown += response.text
        stored = repr(engine.dump())
        for secret in (CHOSEN, user_secret, user_key):
            assert digest(secret)[:16] not in shown + stored
        listing = engine.client.get("/admin/v1/api-keys", headers=engine.headers())
        assert listing.status_code == 200, listing.text
        assert not any(digest(s)[:16] in listing.text for s in (CHOSEN, user_secret))
        assert CHOSEN not in stored and user_secret not in stored
        assert "hash" not in listing.text and "lookup" not in listing.text


def _legacy_database(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A database at revision 0006 with two keys as that version stored them: an
    operator-chosen one (id from its hash) and an issued one."""
    url = fresh_database_url(tmp_path, "legacy.db")
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    issued = generate_key_text()
    issued_id, issued_secret = issued[3:23], issued[24:]
    now = datetime(2026, 1, 1)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0006")
        table = {n: Table(n, MetaData(), autoload_with=conn) for n in ("organizations",
                 "projects", "users", "memberships", "api_keys")}  # fmt: skip
        conn.execute(table["organizations"].insert(), [{"id": "org_old", "name": "Old",
                     "created_at": now}])  # fmt: skip
        conn.execute(table["projects"].insert(), [{"id": "proj_old", "organization_id":
                     "org_old", "name": "Old", "slug": "old", "created_at": now}])  # fmt: skip
        conn.execute(
            table["users"].insert(), [{"id": "user_old", "name": "old", "created_at": now}]
        )
        conn.execute(table["memberships"].insert(), [{"user_id": "user_old", "project_id":
                     "proj_old", "role": "owner"}])  # fmt: skip
        rows = [
            ("key_" + digest(CHOSEN)[:16], digest(CHOSEN)),
            (issued_id, digest(issued_secret)),
        ]
        conn.execute(
            table["api_keys"].insert(),
            [
                {"id": key_id, "secret_sha256": sha, "user_id": "user_old",
                 "project_id": "proj_old", "name": "old", "is_admin": True,
                 "created_at": now, "revoked_at": None}
                for key_id, sha in rows
            ],
        )  # fmt: skip
    engine.dispose()
    return url, {CHOSEN: CHOSEN, issued: issued_secret}


def test_keys_stored_before_salted_hashes_still_work_and_their_plain_hashes_are_gone(
    tmp_path: Path,
):
    url, secrets = _legacy_database(tmp_path)
    for engine in make_test_engine(tmp_path, database_url=url):
        for key in secrets:
            response = engine.client.get("/v3/whoami", headers=engine.headers(key))
            assert response.status_code == 200, response.text
            assert response.json()["project"]["id"] == "proj_old"
            assert digest(secrets[key])[:16] not in response.text
        stored = repr(engine.dump())
        for secret in secrets.values():
            assert digest(secret)[:16] not in stored
        wrong = engine.client.get("/v3/whoami", headers=engine.headers(CHOSEN + "x"))
        assert wrong.status_code == 401

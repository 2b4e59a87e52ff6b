"""Cluster credentials: sealed at rest, shaped by oidc_config, rotated and re-sealed by
the operator's API (admin keys only)."""

from __future__ import annotations

import base64
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import delete

from clusterplane.db.engine import transaction
from clusterplane.db.rows import ServerStateRow
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.clusters.cluster_secrets import (
    CHECK_KEY,
    ForeignCredentialsKey,
    check_server_key,
)
from tests.support.engine import SMALL_FLEET, TEST_CREDENTIALS_KEY, Engine, make_engine
from tests.support.server import ServerProcess

CREATE = {
    "cluster_name": "creds",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
OIDC = {
    "issuer_url": "https://login.example.com/realms/gpu",
    "client_id": "clusterplane",
    "username_claim": "email",
    "username_prefix": "oidc:",
    "group_claim": "groups",
    "group_prefix": "oidc:",
}
NEW_KEY = "a-brand-new-credentials-key-for-this-server-0001"
USER_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)


def create(engine: Engine, **overrides: Any) -> str:
    response = engine.client.post(
        "/v1/compute/clusters", json={**CREATE, **overrides}, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    cluster_id: str = response.json()["cluster_id"]
    return cluster_id


def cluster(engine: Engine, cluster_id: str) -> dict[str, Any]:
    response = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def kubeconfig(engine: Engine, cluster_id: str) -> dict[str, Any]:
    text = base64.b64decode(cluster(engine, cluster_id)["kube_config"])
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def pem(config: dict[str, Any], where: str, key: str) -> x509.Certificate:
    entry = config[where][0]["cluster" if where == "clusters" else "user"]
    return x509.load_pem_x509_certificate(base64.b64decode(entry[key]))


def test_no_private_key_or_kubeconfig_is_stored_in_the_clear(engine: Engine):
    cluster_id = create(engine, cluster_config={"load_balancer": "NONE", "ssh_ca_enabled": True})
    engine.advance(3 * 3600, step=60)
    config = kubeconfig(engine, cluster_id)
    client_key = base64.b64decode(config["users"][0]["user"]["client-key-data"]).decode()
    stored = repr(engine.dump())
    assert "PRIVATE KEY" not in stored
    assert client_key.splitlines()[1] not in stored
    assert "client-key-data" not in stored and "apiVersion" not in stored
    assert stored.count("cp1.") >= 4, "CA key, client key, SSH CA key and kubeconfig"


def test_a_restarted_server_with_a_new_key_reads_old_secrets_until_they_are_resealed(
    engine: Engine, tmp_path: Path
):
    cluster_id = create(engine)
    engine.advance(3 * 3600, step=60)
    before = kubeconfig(engine, cluster_id)
    url, admin = engine.database_url, engine.admin_key
    engine.app.engine.dispose()
    for restarted in make_engine(
        tmp_path,
        database_url=url,
        admin_key=admin,
        credentials_key=NEW_KEY,
        previous_credentials_keys=(TEST_CREDENTIALS_KEY,),
    ):
        assert kubeconfig(restarted, cluster_id) == before
        resealed = restarted.client.post(
            "/admin/v1/credentials/reseal", headers=restarted.headers()
        )
        assert resealed.status_code == 200, resealed.text
        assert resealed.json()["resealed"] == resealed.json()["checked"] == 1
        restarted.app.engine.dispose()
    for without_old_key in make_engine(
        tmp_path, database_url=url, admin_key=admin, credentials_key=NEW_KEY
    ):
        assert kubeconfig(without_old_key, cluster_id) == before


def test_rotation_issues_a_new_ca_that_old_client_certificates_do_not_verify_against(
    engine: Engine,
):
    cluster_id = create(engine)
    engine.advance(3 * 3600, step=60)
    old = kubeconfig(engine, cluster_id)
    response = engine.client.post(
        f"/admin/v1/clusters/{cluster_id}/credentials/rotate", headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    new = kubeconfig(engine, cluster_id)
    new_ca = pem(new, "clusters", "certificate-authority-data")
    assert new_ca != pem(old, "clusters", "certificate-authority-data")
    pem(new, "users", "client-certificate-data").verify_directly_issued_by(new_ca)
    old_client = pem(old, "users", "client-certificate-data")
    try:
        old_client.verify_directly_issued_by(new_ca)
    except Exception:
        pass
    else:
        raise AssertionError("the old client certificate still verifies against the new CA")
    assert response.json()["ssh_ca_public_key"] is None, "no SSH CA unless enabled"


def test_credential_endpoints_refuse_a_non_admin_key_with_403(engine: Engine):
    cluster_id = create(engine)
    user = engine.client.post(
        "/admin/v1/users", json={"name": "u"}, headers=engine.headers()
    ).json()["id"]
    project = engine.client.post(
        "/admin/v1/projects", json={"name": "p", "slug": "p"}, headers=engine.headers()
    ).json()["id"]
    key = engine.client.post(
        "/admin/v1/api-keys",
        json={"user_id": user, "project_id": project},
        headers=engine.headers(),
    ).json()["api_key"]
    before = engine.dump()
    for method, path in (
        ("POST", f"/admin/v1/clusters/{cluster_id}/credentials/rotate"),
        ("GET", f"/admin/v1/clusters/{cluster_id}/ssh-ca"),
        ("POST", "/admin/v1/credentials/reseal"),
    ):
        response = engine.client.request(method, path, headers=engine.headers(key))
        assert response.status_code == 403, (path, response.text)
    assert engine.dump() == before


def test_an_oidc_cluster_gets_an_exec_kubeconfig_for_its_issuer_and_echoes_the_config(
    engine: Engine,
):
    cluster_id = create(engine, oidc_config=OIDC)
    engine.advance(3 * 3600, step=60)
    body = cluster(engine, cluster_id)
    assert body["oidc_config"] == OIDC
    user = kubeconfig(engine, cluster_id)["users"][0]
    assert user["name"] == f"{cluster_id}-oidc"
    assert "client-key-data" not in user["user"]
    exec_ = user["user"]["exec"]
    assert exec_["command"] == "kubectl"
    assert exec_["args"][:2] == ["oidc-login", "get-token"]
    assert f"--oidc-issuer-url={OIDC['issuer_url']}" in exec_["args"]
    assert "--oidc-client-id=clusterplane" in exec_["args"]
    assert "--oidc-extra-scope=email" in exec_["args"]


def test_switching_ssh_ca_on_by_update_gives_the_cluster_an_ssh_ca(engine: Engine):
    cluster_id = create(engine)
    path = f"/admin/v1/clusters/{cluster_id}/ssh-ca"
    assert engine.client.get(path, headers=engine.headers()).status_code == 400
    update = engine.client.put(
        f"/v1/compute/clusters/{cluster_id}",
        json={"cluster_config": {"load_balancer": "NONE", "ssh_ca_enabled": True}},
        headers=engine.headers(),
    )
    assert update.status_code == 200, update.text
    ca = engine.client.get(path, headers=engine.headers())
    assert ca.status_code == 200
    assert ca.json()["public_key"].startswith("ssh-ed25519 ")


def openssl_verify(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`openssl verify` of the kubeconfig's client certificate against its CA, at the real
    current time, as a TLS peer would."""
    entries = (("clusters", "certificate-authority-data"), ("users", "client-certificate-data"))
    paths = []
    for where, key in entries:
        entry = config[where][0]["cluster" if where == "clusters" else "user"]
        path = tmp_path / f"{key}.pem"
        path.write_bytes(base64.b64decode(entry[key]))
        paths.append(str(path))
    return subprocess.run(
        ["openssl", "verify", "-CAfile", paths[0], paths[1]], capture_output=True, text=True
    )


def test_certificates_are_valid_by_the_wall_clock_when_fleet_time_runs_ahead(
    engine: Engine, tmp_path: Path
):
    engine.clock.set(datetime.now(UTC) + timedelta(days=30))  # as --time-scale 600 for 72 min
    cluster_id = create(engine, cluster_config={"load_balancer": "NONE", "ssh_ca_enabled": True})
    engine.advance(3 * 3600, step=60)
    verified = openssl_verify(tmp_path, kubeconfig(engine, cluster_id))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    rotated = engine.client.post(
        f"/admin/v1/clusters/{cluster_id}/credentials/rotate", headers=engine.headers()
    )
    assert rotated.status_code == 200, rotated.text
    verified = openssl_verify(tmp_path, kubeconfig(engine, cluster_id))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    signed = engine.client.post(
        f"/v1/compute/clusters/{cluster_id}/ssh-certificates",
        json={"public_key": USER_KEY, "login": "ubuntu"},
        headers=engine.headers(),
    )
    assert signed.status_code == 200, signed.text
    certificate = serialization.load_ssh_public_identity(signed.json()["certificate"].encode())
    assert isinstance(certificate, serialization.SSHCertificate)
    now = time.time()
    assert certificate.valid_after <= now < certificate.valid_before <= now + 3600 + 5


def test_a_server_started_from_another_directory_refuses_to_start_and_says_what_to_do(
    tmp_path: Path,
):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first = ServerProcess(first_dir, fleet=SMALL_FLEET, credentials_key=None)
    with first, first.client() as client:
        response = client.post("/v1/compute/clusters", json=CREATE)
        assert response.status_code == 200, response.text
        cluster_id = response.json()["cluster_id"]
    elsewhere = ServerProcess(
        second_dir, fleet=SMALL_FLEET, credentials_key=None, database_url=first.database_url
    )
    elsewhere.api_key = first.api_key
    refused = subprocess.run(
        elsewhere.command(), cwd=second_dir, env=elsewhere.env(), capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "CLUSTERPLANE_CREDENTIALS_KEY" in refused.stderr
    assert "credentials/reseal" in refused.stderr
    again = ServerProcess(
        first_dir, fleet=SMALL_FLEET, credentials_key=None, database_url=first.database_url
    )
    again.api_key = first.api_key
    with again, again.client() as client:
        assert client.get(f"/v1/compute/clusters/{cluster_id}").status_code == 200
        assert client.get("/v1/compute/clusters").status_code == 200


def test_a_cluster_whose_secrets_no_key_here_opens_is_listed_without_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """A replica still on the old key meets a cluster sealed by one already given a new key
    (a key rotation in progress): it lists it without a kubeconfig instead of failing."""
    for old in make_engine(tmp_path):
        mine = create(old, cluster_name="old-key")
        for new in make_engine(
            tmp_path,
            database_url=old.database_url,
            admin_key=old.admin_key,
            credentials_key=NEW_KEY,
            previous_credentials_keys=(TEST_CREDENTIALS_KEY,),
        ):
            theirs = create(
                new,
                cluster_name="new-key",
                cluster_config={"load_balancer": "NONE", "ssh_ca_enabled": True},
            )
            new.advance(3 * 3600, step=60)
            assert cluster(new, theirs)["kube_config"]
        listed = old.client.get("/v1/compute/clusters", headers=old.headers())
        assert listed.status_code == 200, listed.text
        kube = {c["cluster_id"]: c["kube_config"] for c in listed.json()["clusters"]}
        assert kube[theirs] == "" and kube[mine] != ""
        said = [r.getMessage() for r in caplog.records if theirs in r.getMessage()]
        assert said and "without its kube_config" in said[0] and "credentials key" in said[0]
        assert cluster(old, theirs)["kube_config"] == ""
        signed = old.client.post(
            f"/v1/compute/clusters/{theirs}/ssh-certificates",
            json={"public_key": USER_KEY, "login": "ubuntu"},
            headers=old.headers(),
        )
        assert signed.status_code == 409, signed.text
        assert "credentials key" in signed.json()["error"]["message"]
        resealed = old.client.post("/admin/v1/credentials/reseal", headers=old.headers())
        assert resealed.status_code == 200, resealed.text
        assert resealed.json()["unreadable"] == [theirs]


def test_a_database_without_a_key_check_is_refused_to_a_server_whose_keys_open_none_of_it(
    engine: Engine,
):
    for _ in range(3):
        create(engine)
    with transaction(engine.app.sessions) as session:  # as written before the check existed
        session.execute(delete(ServerStateRow).where(ServerStateRow.key == CHECK_KEY))

    refused = pytest.raises(ForeignCredentialsKey, match="CLUSTERPLANE_CREDENTIALS_KEY")
    with transaction(engine.app.sessions) as session, refused:
        check_server_key(session, SecretBox(NEW_KEY))
    with transaction(engine.app.sessions) as session:
        check_server_key(session, SecretBox(TEST_CREDENTIALS_KEY))  # its own key: accepted
    with transaction(engine.app.sessions) as session:
        assert session.get(ServerStateRow, CHECK_KEY) is not None  # and recorded

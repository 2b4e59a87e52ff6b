"""A cluster's SSH certificate policy, set by the operator: no root login and no agent,
port or X11 forwarding unless allowed, a pty by default; and only public keys are signed."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.engine import Engine

CREATE = {
    "cluster_name": "ssh-policy",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
CONFIG = {"load_balancer": "NONE", "ssh_ca_enabled": True}
USER_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)


def create(engine: Engine, jumphost_enabled: bool = False) -> str:
    body = {**CREATE, "cluster_config": {**CONFIG, "jumphost_enabled": jumphost_enabled}}
    response = engine.client.post("/v1/compute/clusters", json=body, headers=engine.headers())
    assert response.status_code == 200, response.text
    cluster_id: str = response.json()["cluster_id"]
    return cluster_id


def sign(engine: Engine, cluster_id: str, login: str, public_key: str = USER_KEY) -> Any:
    return engine.client.post(
        f"/v1/compute/clusters/{cluster_id}/ssh-certificates",
        json={"public_key": public_key, "login": login},
        headers=engine.headers(),
    )


def extensions(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    cert = serialization.load_ssh_public_identity(response.json()["certificate"].encode())
    assert isinstance(cert, serialization.SSHCertificate)
    return {name.decode() for name in cert.extensions}


def set_policy(
    engine: Engine, cluster_id: str, policy: dict[str, Any], key: str | None = None
) -> Any:
    return engine.client.put(
        f"/admin/v1/clusters/{cluster_id}/ssh-policy", json=policy, headers=engine.headers(key)
    )


def test_by_default_root_is_refused_and_a_certificate_carries_only_a_pty(engine: Engine):
    cluster_id = create(engine)
    refused = sign(engine, cluster_id, "root")
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["param"] == "login"
    assert "root" in refused.json()["error"]["message"]
    assert extensions(sign(engine, cluster_id, "ubuntu")) == {"permit-pty"}
    policy = engine.client.get(
        f"/admin/v1/clusters/{cluster_id}/ssh-policy", headers=engine.headers()
    )
    assert policy.status_code == 200
    assert policy.json() == {
        "cluster_id": cluster_id,
        "allowed_logins": None,
        "permit_pty": True,
        "permit_agent_forwarding": False,
        "permit_port_forwarding": None,
        "permit_x11_forwarding": False,
        "permit_user_rc": False,
    }


def test_port_forwarding_is_granted_by_default_only_through_a_jump_host(engine: Engine):
    """ProxyJump opens the node's connection as a forwarded channel of the jump host."""
    direct = create(engine)
    assert extensions(sign(engine, direct, "ubuntu")) == {"permit-pty"}
    jump = create(engine, jumphost_enabled=True)
    assert extensions(sign(engine, jump, "ubuntu")) == {"permit-pty", "permit-port-forwarding"}
    assert set_policy(engine, jump, {"permit_port_forwarding": False}).status_code == 200
    assert extensions(sign(engine, jump, "ubuntu")) == {"permit-pty"}
    assert set_policy(engine, direct, {"permit_port_forwarding": True}).status_code == 200
    assert extensions(sign(engine, direct, "ubuntu")) == {"permit-pty", "permit-port-forwarding"}


def test_the_operator_allows_root_and_forwarding_and_certificates_follow(engine: Engine):
    cluster_id = create(engine)
    updated = set_policy(
        engine,
        cluster_id,
        {"allowed_logins": ["root", "ubuntu"], "permit_agent_forwarding": True},
    )
    assert updated.status_code == 200, updated.text
    assert extensions(sign(engine, cluster_id, "root")) == {
        "permit-pty",
        "permit-agent-forwarding",
    }
    other = sign(engine, cluster_id, "alice")
    assert other.status_code == 403
    assert "allowed: root, ubuntu" in other.json()["error"]["message"]
    no_pty = set_policy(engine, cluster_id, {"permit_pty": False, "permit_x11_forwarding": True})
    assert no_pty.status_code == 200
    assert extensions(sign(engine, cluster_id, "alice")) == {"permit-X11-forwarding"}
    assert sign(engine, cluster_id, "root").status_code == 403, "the policy was replaced"


def test_only_admins_set_a_policy_and_a_bad_one_is_a_400(engine: Engine):
    cluster_id = create(engine)
    admin = engine.headers()
    user = engine.client.post("/admin/v1/users", json={"name": "u"}, headers=admin).json()["id"]
    project = engine.client.post(
        "/admin/v1/projects", json={"name": "p", "slug": "p"}, headers=admin
    ).json()["id"]
    key = engine.client.post(
        "/admin/v1/api-keys", json={"user_id": user, "project_id": project}, headers=admin
    ).json()["api_key"]
    assert set_policy(engine, cluster_id, {"allowed_logins": ["root"]}, key).status_code == 403
    for bad in (
        {"allowed_logins": ["Root!"]},
        {"permit_x11": True},
        {"permit_pty": "yes"},
        {"allowed_logins": "root"},
    ):
        response = set_policy(engine, cluster_id, bad)
        assert response.status_code == 400, (bad, response.text)
    assert set_policy(engine, "no-such-cluster", {}).status_code == 404
    assert sign(engine, cluster_id, "root").status_code == 403


def test_a_certificate_sent_as_the_public_key_is_refused_with_400(engine: Engine):
    cluster_id = create(engine)
    certificate = sign(engine, cluster_id, "ubuntu").json()["certificate"]
    refused = sign(engine, cluster_id, "ubuntu", public_key=certificate + " me@laptop")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "public_key"
    assert "certificate" in refused.json()["error"]["message"]

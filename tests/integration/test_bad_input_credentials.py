"""Malformed and hostile input to the fields and endpoints of shared storage limits, OIDC,
cluster_config, add-ons, SSH certificates and credential rotation: each gets the right 4xx
with the spec's error envelope and leaves the database exactly as it was.

Same world and checks as test_bad_input.py, plus `cluster_ssh`: a cluster of project alpha
with `ssh_ca_enabled`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.integration.test_bad_input import (
    CLUSTERS,
    VOLUMES,
    Case,
    World,
    assert_error,
    build_world,
    create_body,
)
from tests.support.engine import make_engine

KiB = 1024
OIDC = {
    "issuer_url": "https://login.example.com",
    "client_id": "gpu",
    "username_claim": "email",
    "username_prefix": "oidc:",
    "group_claim": "groups",
    "group_prefix": "oidc:",
}
SSH_CONFIG = {"load_balancer": "NONE", "ssh_ca_enabled": True}
SIGN_NO_CA = "/v1/compute/clusters/{cluster_a}/ssh-certificates"
SIGN = "/v1/compute/clusters/{cluster_ssh}/ssh-certificates"


def _openssh(key: Any) -> str:
    raw: bytes = key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return raw.decode()


ED25519 = _openssh(ed25519.Ed25519PrivateKey.generate().public_key()) + " me@laptop"
RSA_1024 = _openssh(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())
PRIVATE_PEM = (
    ed25519.Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    .decode()
)


def oidc(**overrides: Any) -> dict[str, Any]:
    return create_body(oidc_config={**OIDC, **overrides})


def slurm(**overrides: Any) -> dict[str, Any]:
    return create_body(cluster_type="SLURM", slurm_shm_size_gib=64, **overrides)


def scripts(**values: Any) -> dict[str, Any]:
    return {"load_balancer": "NONE", "slurm_startup_scripts": values}


def sign(**overrides: Any) -> dict[str, Any]:
    return {"public_key": ED25519, "login": "ubuntu", **overrides}


OIDC_CASES = [
    Case("oidc-issuer-with-query", "POST", CLUSTERS, 400,
         oidc(issuer_url="https://login.example.com/?tenant=x"), param="oidc_config.issuer_url"),
    Case("oidc-issuer-with-fragment", "POST", CLUSTERS, 400,
         oidc(issuer_url="https://login.example.com/#x"), param="oidc_config.issuer_url"),
    Case("oidc-issuer-with-userinfo", "POST", CLUSTERS, 400,
         oidc(issuer_url="https://admin:pw@login.example.com"), param="oidc_config.issuer_url"),
    Case("oidc-issuer-no-scheme", "POST", CLUSTERS, 400,
         oidc(issuer_url="login.example.com"), param="oidc_config.issuer_url"),
    Case("oidc-issuer-empty", "POST", CLUSTERS, 400,
         oidc(issuer_url=""), param="oidc_config.issuer_url"),
    Case("oidc-ca_cert-not-pem", "POST", CLUSTERS, 400,
         oidc(ca_cert="hello"), param="oidc_config.ca_cert", says=("PEM",)),
    Case("oidc-ca_cert-garbage-inside-pem", "POST", CLUSTERS, 400,
         oidc(ca_cert="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
         param="oidc_config.ca_cert"),
    Case("oidc-ca_cert-a-private-key", "POST", CLUSTERS, 400,
         oidc(ca_cert=PRIVATE_PEM), param="oidc_config.ca_cert"),
    Case("oidc-ca_cert-number", "POST", CLUSTERS, 400,
         oidc(ca_cert=5), param="oidc_config.ca_cert"),
    Case("oidc-username_claim-with-space", "POST", CLUSTERS, 400,
         oidc(username_claim="e mail"), param="oidc_config.username_claim"),
    Case("oidc-group_claim-empty", "POST", CLUSTERS, 400,
         oidc(group_claim=""), param="oidc_config.group_claim"),
    Case("oidc-username_prefix-newline", "POST", CLUSTERS, 400,
         oidc(username_prefix="oidc:\n"), param="oidc_config.username_prefix"),
    Case("oidc-client_id-missing", "POST", CLUSTERS, 400,
         create_body(oidc_config={k: v for k, v in OIDC.items() if k != "client_id"}),
         param="oidc_config.client_id"),
    Case("oidc_config-a-list", "POST", CLUSTERS, 400,
         create_body(oidc_config=[OIDC]), param="oidc_config"),
]  # fmt: skip

CLUSTER_CONFIG_CASES = [
    Case("startup-scripts-on-kubernetes", "POST", CLUSTERS, 400,
         create_body(cluster_config=scripts(worker_prolog="echo hi")),
         param="cluster_config.slurm_startup_scripts", says=("SLURM",)),
    Case("startup-script-with-nul", "POST", CLUSTERS, 400,
         slurm(cluster_config=scripts(worker_prolog="echo a\x00b")),
         param="cluster_config.slurm_startup_scripts.worker_prolog"),
    Case("startup-script-over-64-KiB", "POST", CLUSTERS, 400,
         slurm(cluster_config=scripts(worker_epilog="#" * (64 * KiB + 1))),
         param="cluster_config.slurm_startup_scripts.worker_epilog"),
    Case("startup-scripts-over-256-KiB-together", "POST", CLUSTERS, 400,
         slurm(cluster_config=scripts(**{
             name: "#" * (60 * KiB)
             for name in ("worker_prolog", "worker_epilog", "controller_prolog",
                          "controller_epilog", "extra_slurm_conf")
         })), param="cluster_config.slurm_startup_scripts"),
    Case("startup-script-a-list", "POST", CLUSTERS, 400,
         slurm(cluster_config=scripts(login_init_script=["echo"])),
         param="cluster_config.slurm_startup_scripts.login_init_script"),
    Case("startup-scripts-a-string", "POST", CLUSTERS, 400,
         slurm(cluster_config={"load_balancer": "NONE", "slurm_startup_scripts": "echo"}),
         param="cluster_config.slurm_startup_scripts"),
    Case("kubernetes-dashboard-on-slurm", "POST", CLUSTERS, 400,
         slurm(cluster_config={"load_balancer": "NONE", "kubernetes_dashboard_enabled": True}),
         param="cluster_config.kubernetes_dashboard_enabled"),
    Case("ssh_ca_enabled-string", "POST", CLUSTERS, 400,
         create_body(cluster_config={"load_balancer": "NONE", "ssh_ca_enabled": "yes"}),
         param="cluster_config.ssh_ca_enabled"),
    Case("jumphost_enabled-number", "POST", CLUSTERS, 400,
         create_body(cluster_config={"load_balancer": "NONE", "jumphost_enabled": 1}),
         param="cluster_config.jumphost_enabled"),
    Case("load_balancer-unknown", "POST", CLUSTERS, 400,
         create_body(cluster_config={"load_balancer": "HAPROXY"}),
         param="cluster_config.load_balancer"),
    Case("gpu_operator_version-with-space", "POST", CLUSTERS, 400,
         create_body(cluster_config={"load_balancer": "NONE", "gpu_operator_version": "v 24"}),
         param="cluster_config.gpu_operator_version"),
    Case("observability-not-an-object", "POST", CLUSTERS, 400,
         create_body(cluster_config={"load_balancer": "NONE", "observability": True}),
         param="cluster_config.observability"),
    Case("update-startup-scripts-on-kubernetes", "PUT", CLUSTERS + "/{cluster_a}", 400,
         {"cluster_config": scripts(worker_prolog="echo hi")},
         param="cluster_config.slurm_startup_scripts"),
]  # fmt: skip

ADD_ON_CASES = [
    Case("add_on-dashboard-on-slurm", "POST", CLUSTERS, 400,
         slurm(add_ons=[{"name": "d", "add_on_type": "dashboard"}]),
         param="add_ons.0.add_on_type", says=("KUBERNETES",)),
    Case("add_on-ingress-on-slurm", "POST", CLUSTERS, 400,
         slurm(add_ons=[{"name": "i", "add_on_type": "ingress"}]),
         param="add_ons.0.add_on_type"),
    Case("add_on-config-of-another-type", "POST", CLUSTERS, 400,
         create_body(add_ons=[{"name": "h", "add_on_type": "headlamp",
                               "config": {"slurm_web": {"enabled": True}}}]),
         param="add_ons.0.config.slurm_web"),
    Case("update-add_on-config-of-another-type", "PUT", CLUSTERS + "/{cluster_a}", 400,
         {"add_ons": [{"name": "headlamp", "config": {"dashboard": {"enabled": True}}}]},
         param="add_ons.0.config.dashboard"),
    Case("update-add_on-slurm_web-on-kubernetes", "PUT", CLUSTERS + "/{cluster_a}", 400,
         {"add_ons": [{"name": "slurm_web", "config": {"slurm_web": {"enabled": True}}}]},
         param="add_ons.0.name"),
    Case("add_on-enabled-string", "POST", CLUSTERS, 400,
         create_body(add_ons=[{"name": "h", "add_on_type": "headlamp",
                               "config": {"headlamp": {"enabled": "true"}}}]),
         param="add_ons.0.config.headlamp.enabled"),
]  # fmt: skip

STORAGE_LIMIT_CASES = [
    Case("volume-over-operator-max", "POST", VOLUMES, 400,
         {"volume_name": "v", "size_tib": 2048, "region": "test-1"}, param="size_tib",
         says=("1 to 1024 TiB",)),
    Case("volume-over-region-capacity", "POST", VOLUMES, 409,
         {"volume_name": "v", "size_tib": 11, "region": "test-2"}, param="size_tib",
         says=("10 TiB of shared storage free",)),
    Case("volume-grow-over-region-capacity", "PUT", VOLUMES, 409,
         lambda w: {"volume_id": w.volume_free, "size_tib": 1000}, param="size_tib"),
    Case("volume-grow-over-operator-max", "PUT", VOLUMES, 400,
         lambda w: {"volume_id": w.volume_free, "size_tib": 4096}, param="size_tib"),
    Case("shared_volume-over-region-capacity", "POST", CLUSTERS, 409,
         create_body(shared_volume={"volume_name": "s", "size_tib": 500, "region": "test-1"}),
         param="shared_volume.size_tib"),
    Case("shared_volume-over-operator-max", "POST", CLUSTERS, 400,
         create_body(shared_volume={"volume_name": "s", "size_tib": 5000, "region": "test-1"}),
         param="shared_volume.size_tib"),
]  # fmt: skip

SSH_CASES = [
    Case("ssh-cluster-without-ca", "POST", SIGN_NO_CA, 400, sign(), param="cluster_id",
         says=("ssh_ca_enabled",)),
    Case("ssh-unknown-cluster", "POST", "/v1/compute/clusters/nope/ssh-certificates", 404,
         sign()),
    Case("ssh-foreign-cluster", "POST", "/v1/compute/clusters/{cluster_b}/ssh-certificates",
         404, sign()),
    Case("ssh-no-auth", "POST", SIGN, 401, sign(), who=None),
    Case("ssh-public_key-missing", "POST", SIGN, 400, {"login": "ubuntu"}, param="public_key"),
    Case("ssh-public_key-garbage", "POST", SIGN, 400, sign(public_key="hello world"),
         param="public_key"),
    Case("ssh-public_key-type-only", "POST", SIGN, 400, sign(public_key="ssh-ed25519"),
         param="public_key"),
    Case("ssh-public_key-rsa-1024", "POST", SIGN, 400, sign(public_key=RSA_1024),
         param="public_key", says=("2048",)),
    Case("ssh-public_key-two-lines", "POST", SIGN, 400,
         sign(public_key=ED25519 + "\n" + ED25519), param="public_key"),
    Case("ssh-public_key-a-private-key", "POST", SIGN, 400, sign(public_key=PRIVATE_PEM),
         param="public_key"),
    Case("ssh-public_key-nul", "POST", SIGN, 400, sign(public_key=ED25519 + "\x00"),
         param="public_key"),
    Case("ssh-public_key-number", "POST", SIGN, 400, sign(public_key=42), param="public_key"),
    Case("ssh-login-uppercase", "POST", SIGN, 400, sign(login="Root"), param="login"),
    Case("ssh-login-too-long", "POST", SIGN, 400, sign(login="u" * 33), param="login"),
    Case("ssh-login-with-space", "POST", SIGN, 400, sign(login="a b"), param="login"),
    Case("ssh-login-empty", "POST", SIGN, 400, sign(login=""), param="login"),
    Case("ssh-valid_seconds-too-short", "POST", SIGN, 400, sign(valid_seconds=10),
         param="valid_seconds"),
    Case("ssh-valid_seconds-string", "POST", SIGN, 400, sign(valid_seconds="3600"),
         param="valid_seconds"),
    Case("ssh-valid_seconds-over-server-max", "POST", SIGN, 400,
         sign(valid_seconds=100_000), param="valid_seconds", says=("86400",)),
    Case("ssh-body-a-list", "POST", SIGN, 400, [sign()]),
]  # fmt: skip

ADMIN_CREDENTIAL_CASES = [
    Case("rotate-as-user", "POST", CLUSTERS.replace("/v1/compute", "/admin/v1")
         + "/{cluster_a}/credentials/rotate", 403),
    Case("rotate-unknown-cluster", "POST", "/admin/v1/clusters/nope/credentials/rotate", 404,
         who="admin", param="cluster_id"),
    Case("ssh-ca-as-user", "GET", "/admin/v1/clusters/{cluster_ssh}/ssh-ca", 403),
    Case("ssh-ca-of-cluster-without-one", "GET", "/admin/v1/clusters/{cluster_a}/ssh-ca", 400,
         who="admin", param="cluster_id"),
    Case("ssh-ca-unknown-cluster", "GET", "/admin/v1/clusters/nope/ssh-ca", 404, who="admin"),
    Case("reseal-as-user", "POST", "/admin/v1/credentials/reseal", 403),
]  # fmt: skip

CASES = (
    OIDC_CASES
    + CLUSTER_CONFIG_CASES
    + ADD_ON_CASES
    + STORAGE_LIMIT_CASES
    + SSH_CASES
    + ADMIN_CREDENTIAL_CASES
)


@dataclass
class SshWorld:
    world: World
    cluster_ssh: str

    def ids(self) -> dict[str, str]:
        ids = {k: v for k, v in vars(self.world).items() if isinstance(v, str)}
        return {**ids, "cluster_ssh": self.cluster_ssh}


@pytest.fixture(scope="module")
def ssh_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshWorld]:
    engines = make_engine(tmp_path_factory.mktemp("bad_input_credentials"))
    world = build_world(next(engines))
    response = world.engine.client.post(
        CLUSTERS,
        headers=world.headers("a"),
        json=create_body(cluster_name="with-ssh", cluster_config=SSH_CONFIG),
    )
    assert response.status_code == 200, response.text
    yield SshWorld(world, response.json()["cluster_id"])
    engines.close()


def send(ssh_world: SshWorld, case: Case) -> httpx.Response:
    world = ssh_world.world
    headers = world.headers(case.who)
    body = case.json(world) if callable(case.json) else case.json
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = body
    path = case.path.format(**ssh_world.ids())
    return world.engine.client.request(case.method, path, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_request_is_refused_cleanly(ssh_world: SshWorld, case: Case) -> None:
    world = ssh_world.world
    before = world.engine.dump()
    response = send(ssh_world, case)
    error = assert_error(response, case.status, secrets=world.secrets)
    if case.param is not None:
        assert error["param"] == case.param, error
    for fragment in case.says:
        assert fragment in error["message"], error
    assert world.engine.dump() == before


def test_cases_are_many_and_distinct() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_base_requests_are_valid(ssh_world: SshWorld) -> None:
    """The cases differ from accepted requests only in what they break."""
    world = ssh_world.world
    client, headers = world.engine.client, world.headers("a")
    for body in (oidc(), slurm(cluster_config=scripts(worker_prolog="echo hi"))):
        response = client.post(CLUSTERS, headers=headers, json=body)
        assert response.status_code == 200, response.text
    signed = client.post(SIGN.format(**ssh_world.ids()), headers=headers, json=sign())
    assert signed.status_code == 200, signed.text
    assert signed.json()["certificate"].startswith("ssh-ed25519-cert-v01@openssh.com ")

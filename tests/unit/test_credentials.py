"""Per-cluster Kubernetes credentials and the `kube_config` wire format (spec §6.2, §9.11)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusterplane.services.clusters.credentials import (
    ClusterCredentials,
    api_server_url,
    build_kubeconfig,
    issue_cluster_credentials,
)

NOW = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


@pytest.fixture(scope="module")
def creds_a() -> ClusterCredentials:
    return issue_cluster_credentials(cluster_id="cl-aaa", now=NOW)


@pytest.fixture(scope="module")
def creds_b() -> ClusterCredentials:
    return issue_cluster_credentials(cluster_id="cl-bbb", now=NOW)


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def _verify(ca_pem: str, client_pem: str) -> None:
    ca = _cert(ca_pem)
    client = _cert(client_pem)
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert client.signature_hash_algorithm is not None
    key.verify(
        client.signature,
        client.tbs_certificate_bytes,
        ec.ECDSA(client.signature_hash_algorithm),
    )


def _kubeconfig(creds: ClusterCredentials, cluster_id: str, name: str) -> dict[str, Any]:
    wire = build_kubeconfig(
        cluster_id=cluster_id,
        cluster_name=name,
        server_url=f"https://api.{cluster_id}.us-east.example.com:6443",
        credentials=creds,
    )
    parsed = yaml.safe_load(base64.b64decode(wire, validate=True))
    assert isinstance(parsed, dict)
    return parsed


def test_kube_config_is_standard_base64_without_newlines_of_valid_yaml(
    creds_a: ClusterCredentials,
) -> None:
    wire = build_kubeconfig(
        cluster_id="cl-aaa",
        cluster_name="training",
        server_url="https://api.cl-aaa.us-east.example.com:6443",
        credentials=creds_a,
    )
    assert "\n" not in wire
    assert "-" not in wire and "_" not in wire
    config = yaml.safe_load(base64.b64decode(wire, validate=True))
    assert config["apiVersion"] == "v1"
    assert config["kind"] == "Config"


def test_kubeconfig_has_the_three_lists_the_cli_reads(creds_a: ClusterCredentials) -> None:
    config = _kubeconfig(creds_a, "cl-aaa", "training")
    server = "https://api.cl-aaa.us-east.example.com:6443"
    assert config["clusters"][0]["name"] == "training"
    assert config["clusters"][0]["cluster"]["server"] == server
    assert config["contexts"][0]["name"] == "training"
    assert config["contexts"][0]["context"] == {"cluster": "training", "user": "cl-aaa-admin"}
    assert config["users"][0]["name"] == "cl-aaa-admin"
    assert config["current-context"] == "training"


def test_kubeconfig_embeds_the_ca_and_client_pair_as_base64_pem(
    creds_a: ClusterCredentials,
) -> None:
    config = _kubeconfig(creds_a, "cl-aaa", "training")
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]

    def decode(v: str) -> str:
        return base64.b64decode(v, validate=True).decode()

    assert decode(cluster["certificate-authority-data"]) == creds_a.ca_cert_pem
    assert decode(user["client-certificate-data"]) == creds_a.client_cert_pem
    assert decode(user["client-key-data"]) == creds_a.client_key_pem


def test_kubeconfig_never_contains_the_ca_private_key(creds_a: ClusterCredentials) -> None:
    wire = build_kubeconfig(
        cluster_id="cl-aaa",
        cluster_name="training",
        server_url="https://x:6443",
        credentials=creds_a,
    )
    text = base64.b64decode(wire).decode()
    assert base64.b64encode(creds_a.ca_key_pem.encode()).decode() not in text
    assert creds_a.ca_key_pem not in text


def test_user_name_is_unique_per_cluster_even_when_cluster_names_match(
    creds_a: ClusterCredentials, creds_b: ClusterCredentials
) -> None:
    a = _kubeconfig(creds_a, "cl-aaa", "same-name")
    b = _kubeconfig(creds_b, "cl-bbb", "same-name")
    assert a["users"][0]["name"] == "cl-aaa-admin"
    assert b["users"][0]["name"] == "cl-bbb-admin"
    assert a["users"][0]["name"] != b["users"][0]["name"]


def test_two_clusters_get_different_cas(
    creds_a: ClusterCredentials, creds_b: ClusterCredentials
) -> None:
    assert creds_a.ca_cert_pem != creds_b.ca_cert_pem
    assert creds_a.ca_key_pem != creds_b.ca_key_pem
    ca_a, ca_b = _cert(creds_a.ca_cert_pem), _cert(creds_b.ca_cert_pem)
    assert ca_a.public_key() != ca_b.public_key()
    assert ca_a.subject != ca_b.subject


def test_issuing_twice_for_the_same_cluster_gives_fresh_keys() -> None:
    first = issue_cluster_credentials(cluster_id="cl-aaa", now=NOW)
    second = issue_cluster_credentials(cluster_id="cl-aaa", now=NOW)
    assert first.ca_key_pem != second.ca_key_pem
    assert first.client_key_pem != second.client_key_pem


def test_client_certificate_verifies_against_its_own_cluster_ca(
    creds_a: ClusterCredentials, creds_b: ClusterCredentials
) -> None:
    _verify(creds_a.ca_cert_pem, creds_a.client_cert_pem)
    _verify(creds_b.ca_cert_pem, creds_b.client_cert_pem)


def test_client_certificate_does_not_verify_against_another_cluster_ca(
    creds_a: ClusterCredentials, creds_b: ClusterCredentials
) -> None:
    with pytest.raises(InvalidSignature):
        _verify(creds_b.ca_cert_pem, creds_a.client_cert_pem)
    with pytest.raises(InvalidSignature):
        _verify(creds_a.ca_cert_pem, creds_b.client_cert_pem)


def test_client_certificate_is_a_system_masters_admin_for_client_auth(
    creds_a: ClusterCredentials,
) -> None:
    client = _cert(creds_a.client_cert_pem)
    ca = _cert(creds_a.ca_cert_pem)
    cn = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    org = client.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [a.value for a in cn] == ["cl-aaa-admin"]
    assert [a.value for a in org] == ["system:masters"]
    assert client.issuer == ca.subject
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    client.verify_directly_issued_by(ca)


def test_ca_is_a_self_signed_p256_ca_named_after_the_cluster(
    creds_a: ClusterCredentials,
) -> None:
    ca = _cert(creds_a.ca_cert_pem)
    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["clusterplane-ca-cl-aaa"]
    assert ca.issuer == ca.subject
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    ca.verify_directly_issued_by(ca)


def test_private_keys_are_unencrypted_pkcs8_pem(creds_a: ClusterCredentials) -> None:
    for pem in (creds_a.ca_key_pem, creds_a.client_key_pem):
        assert pem.startswith("-----BEGIN PRIVATE KEY-----")


def test_validity_dates_follow_now_not_the_system_clock(creds_a: ClusterCredentials) -> None:
    start = NOW.replace(microsecond=0)
    ca = _cert(creds_a.ca_cert_pem)
    client = _cert(creds_a.client_cert_pem)
    assert ca.not_valid_before_utc == start
    assert ca.not_valid_after_utc == start + timedelta(days=3650)
    assert client.not_valid_before_utc == start
    assert client.not_valid_after_utc == start + timedelta(days=365)


def test_validity_dates_from_a_non_utc_or_naive_now_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2030, 1, 1, 12, 0, 0, tzinfo=plus_two)
    creds = issue_cluster_credentials(cluster_id="cl-ccc", now=local)
    assert _cert(creds.ca_cert_pem).not_valid_before_utc == datetime(2030, 1, 1, 10, tzinfo=UTC)
    naive = issue_cluster_credentials(cluster_id="cl-ccc", now=datetime(2030, 1, 1, 10))
    assert _cert(naive.client_cert_pem).not_valid_before_utc == datetime(2030, 1, 1, 10, tzinfo=UTC)


def test_api_server_url_is_built_from_cluster_region_and_base_domain() -> None:
    url = api_server_url(cluster_id="cl-aaa", region="us-east", base_domain="example.com")
    assert url == "https://api.cl-aaa.us-east.example.com:6443"


@pytest.mark.parametrize("cluster_id", ["", " cl-aaa"])
def test_issuing_credentials_rejects_a_blank_cluster_id(cluster_id: str) -> None:
    with pytest.raises(ValueError):
        issue_cluster_credentials(cluster_id=cluster_id, now=NOW)


@pytest.mark.parametrize("name", ["n", "Y", "on", "1e3", "0x1F", "007", "-1", ".5", "null"])
def test_cluster_names_kubectl_would_misread_are_quoted_in_the_yaml(
    creds_a: ClusterCredentials, name: str
) -> None:
    wire = build_kubeconfig(
        cluster_id="cl-aaa", cluster_name=name, server_url="https://x:6443", credentials=creds_a
    )
    text = base64.b64decode(wire, validate=True).decode()
    assert f'name: "{name}"' in text
    config = yaml.safe_load(text)
    assert config["clusters"][0]["name"] == name
    assert config["contexts"][0]["context"]["cluster"] == name
    assert config["current-context"] == name


def test_an_oidc_kubeconfig_has_an_exec_user_for_the_issuer_and_no_client_key(
    creds_a: ClusterCredentials,
) -> None:
    oidc = {
        "issuer_url": "https://login.example.com",
        "client_id": "gpu",
        "username_claim": "sub",
        "username_prefix": "oidc:",
        "group_claim": "groups",
        "group_prefix": "oidc:",
        "ca_cert": creds_a.ca_cert_pem,
    }
    wire = build_kubeconfig(
        cluster_id="cl-aaa",
        cluster_name="train",
        server_url="https://api.cl-aaa.x.example.com:6443",
        credentials=creds_a,
        oidc=oidc,
    )
    config = yaml.safe_load(base64.b64decode(wire))
    (user,) = config["users"]
    assert user["name"] == "cl-aaa-oidc"
    assert config["contexts"][0]["context"]["user"] == "cl-aaa-oidc"
    assert set(user["user"]) == {"exec"}
    args = user["user"]["exec"]["args"]
    assert "--oidc-issuer-url=https://login.example.com" in args
    assert "--oidc-extra-scope=groups" in args
    assert not any(a.startswith("--oidc-extra-scope=sub") for a in args)
    ca_arg = next(a for a in args if a.startswith("--certificate-authority-data="))
    assert base64.b64decode(ca_arg.split("=", 1)[1]).decode() == creds_a.ca_cert_pem
    assert "PRIVATE KEY" not in base64.b64decode(wire).decode()

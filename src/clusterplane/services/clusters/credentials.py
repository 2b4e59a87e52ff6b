"""Per-cluster Kubernetes credentials and the `kube_config` the API hands out.

What it owns:
    Minting a cluster's certificate authority and its admin client certificate
    (`issue_cluster_credentials`), rendering them into the wire form of a Cluster's
    `kube_config` field (`build_kubeconfig`), and the API server address a cluster's
    kubeconfig points at (`api_server_url`).

Who calls it:
    The cluster use cases in `clusterplane.services` when a cluster is created (issue once,
    store the result) and when its `kube_config` is rendered for a response. Everything
    here is a pure function: no database, no clock, no I/O. The caller persists the
    `ClusterCredentials` it gets back.

Invariants:
    * Every cluster gets its own CA; a client certificate verifies only against the CA of
      the cluster it was issued for.
    * All validity dates derive from the `now` argument, never from the system clock, so
      results are deterministic in time (serial numbers and keys are still random).
    * `kube_config` is STANDARD base64 (``+/`` alphabet, padded, no newlines) of a YAML
      kubeconfig with ``clusters[0]``, ``contexts[0].context`` and ``users[0]``
      (spec clusters-api.md §6.2 and §9 item 11).
    * The kubeconfig user is named ``<cluster_id>-admin``. `tg clusters get-credentials`
      renames the first cluster and context to the context name but not the user, so a
      user name shared between clusters would collide when two kubeconfigs are merged.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusterplane.clock import utc

__all__ = [
    "CA_VALIDITY",
    "CLIENT_VALIDITY",
    "ClusterCredentials",
    "admin_user_name",
    "api_server_url",
    "build_kubeconfig",
    "issue_cluster_credentials",
    "oidc_exec_config",
    "oidc_user_name",
]

CA_VALIDITY = timedelta(days=3650)
"""How long a cluster CA is valid: ten years from issue."""

CLIENT_VALIDITY = timedelta(days=365)
"""How long the admin client certificate is valid: one year from issue."""

KUBE_API_PORT = 6443


@dataclass(frozen=True)
class ClusterCredentials:
    """A cluster's CA and its admin client certificate, all as PEM text.

    `ca_key_pem` and `client_key_pem` are UNENCRYPTED PKCS#8 PEM: whoever stores them
    seals them first (`clusterplane.services.clusters.cluster_secrets`). Never log these values or
    return `ca_key_pem` over the API.
    """

    ca_cert_pem: str
    """Self-signed EC P-256 CA, CN ``clusterplane-ca-<cluster_id>``, valid ten years."""
    ca_key_pem: str
    """The CA's private key, unencrypted PKCS#8 PEM (see the class docstring)."""
    client_cert_pem: str
    """Client certificate signed by the CA: CN ``<cluster_id>-admin``, O ``system:masters``."""
    client_key_pem: str
    """The client's private key, unencrypted PKCS#8 PEM."""


def admin_user_name(cluster_id: str) -> str:
    """The kubeconfig user (and client certificate CN) for a cluster: ``<cluster_id>-admin``."""
    return f"{cluster_id}-admin"


def oidc_user_name(cluster_id: str) -> str:
    """The kubeconfig user of an OIDC cluster: ``<cluster_id>-oidc``."""
    return f"{cluster_id}-oidc"


def _require(value: str, what: str) -> None:
    if not value or value.strip() != value:
        raise ValueError(f"{what} must be a non-empty string without surrounding whitespace")


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def issue_cluster_credentials(*, cluster_id: str, now: datetime) -> ClusterCredentials:
    """Mint a fresh CA and admin client certificate for `cluster_id`, valid from `now`.

    `now` is taken as UTC if naive and truncated to whole seconds (X.509 dates have
    second precision). The CA is valid for `CA_VALIDITY`, the client certificate for
    `CLIENT_VALIDITY`; both start at `now`. Keys are EC P-256 with ECDSA-SHA256 signatures,
    which kubectl and the Kubernetes API server accept.
    """
    _require(cluster_id, "cluster_id")
    start = utc(now).replace(microsecond=0)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"clusterplane-ca-{cluster_id}")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    client_key = ec.generate_private_key(ec.SECP256R1())
    client_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, admin_user_name(cluster_id)),
        ]
    )
    client_cert = (
        x509.CertificateBuilder()
        .subject_name(client_name)
        .issuer_name(ca_name)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CLIENT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    return ClusterCredentials(
        ca_cert_pem=_cert_pem(ca_cert),
        ca_key_pem=_private_key_pem(ca_key),
        client_cert_pem=_cert_pem(client_cert),
        client_key_pem=_private_key_pem(client_key),
    )


# Plain scalars that Go's YAML 1.1 parser (which kubectl uses) would not read as strings,
# even though PyYAML does and so leaves them unquoted: ``y``/``n`` are booleans there,
# ``1e3`` is a float. Such values are double-quoted so every name stays a string.
_GO_YAML_NON_STRINGS = frozenset(
    {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~", ""}
)
_GO_YAML_NUMBER_START = frozenset("0123456789+-.")


# libyaml's emitter when PyYAML was built with it: a create spends far less in it than in
# the pure-Python one (docs/profiles.md); the two write the same text.
_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _KubeconfigDumper(_SafeDumper):  # type: ignore[valid-type,misc]
    """A safe dumper whose output kubectl's YAML 1.1 parser reads back unchanged."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value.lower() in _GO_YAML_NON_STRINGS or value[:1] in _GO_YAML_NUMBER_START:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_KubeconfigDumper.add_representer(str, _represent_str)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def build_kubeconfig(
    *,
    cluster_id: str,
    cluster_name: str,
    server_url: str,
    credentials: ClusterCredentials,
    oidc: dict[str, Any] | None = None,
) -> str:
    """Return the wire `kube_config`: standard base64, without newlines, of a kubeconfig YAML.

    The YAML has one cluster and one context, both named `cluster_name` (the CLI renames
    them anyway), and one user (the CLI does not rename it, so it is unique per cluster):
    ``<cluster_id>-admin`` with the client certificate, or, when `oidc` (the cluster's
    `oidc_config`) is given, ``<cluster_id>-oidc`` with an exec credential plugin
    (`kubectl oidc-login`) that logs in at the issuer. The CA private key is never included.
    """
    _require(cluster_id, "cluster_id")
    _require(cluster_name, "cluster_name")
    _require(server_url, "server_url")
    if oidc is not None:
        user = oidc_user_name(cluster_id)
        user_entry: dict[str, Any] = {"exec": oidc_exec_config(oidc)}
    else:
        user = admin_user_name(cluster_id)
        user_entry = {
            "client-certificate-data": _b64(credentials.client_cert_pem),
            "client-key-data": _b64(credentials.client_key_pem),
        }
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster_name,
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": _b64(credentials.ca_cert_pem),
                },
            }
        ],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [
            {
                "name": cluster_name,
                "context": {"cluster": cluster_name, "user": user},
            }
        ],
        "current-context": cluster_name,
        "preferences": {},
    }
    text = yaml.dump(
        config,
        Dumper=_KubeconfigDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )
    return _b64(text)


def oidc_exec_config(oidc: dict[str, Any]) -> dict[str, Any]:
    """The `exec` user of an OIDC kubeconfig: kubelogin's `get-token` for the issuer.

    Claims other than ``sub`` are asked for as extra scopes (``email``, ``groups``...), so
    the ID token carries what the API server maps to user and group names.
    """
    args = [
        "oidc-login",
        "get-token",
        f"--oidc-issuer-url={oidc['issuer_url']}",
        f"--oidc-client-id={oidc['client_id']}",
    ]
    for claim in dict.fromkeys([oidc["username_claim"], oidc["group_claim"]]):
        if claim != "sub":
            args.append(f"--oidc-extra-scope={claim}")
    if oidc.get("ca_cert"):
        args.append(f"--certificate-authority-data={_b64(str(oidc['ca_cert']))}")
    return {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "kubectl",
        "args": args,
        "interactiveMode": "IfAvailable",
        "provideClusterInfo": False,
    }


def api_server_url(*, cluster_id: str, region: str, base_domain: str) -> str:
    """The Kubernetes API endpoint of a cluster: ``https://api.<id>.<region>.<base>:6443``."""
    _require(cluster_id, "cluster_id")
    _require(region, "region")
    domain = base_domain.strip(".")
    _require(domain, "base_domain")
    return f"https://api.{cluster_id}.{region}.{domain}:{KUBE_API_PORT}"

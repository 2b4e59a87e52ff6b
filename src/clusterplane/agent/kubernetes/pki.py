"""Certificates a Kubernetes cluster's processes use, signed by the cluster's own CA.

`issue(ca_cert_pem, ca_key_pem, subject, ...)` signs a new key pair with the cluster CA
(the one clusterplane issues per cluster, EC or RSA): a client certificate (`clients`
hold a Kubernetes user name as CN and its groups as O) or a serving one (`sans`, DNS
names and IP addresses). The control-plane runtime issues its components' pairs with it;
the control plane (server) issues each worker's node pair (CN `system:node:NAME`, O
`system:nodes`), so a worker never holds the CA key. `kubeconfig(...)` renders the file
a component reads its server, CA and client pair from. Keys are PEM PKCS#8, unencrypted:
callers write them 0600.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    cert_pem: str
    key_pem: str


def node_user(node_name: str) -> str:
    """The Kubernetes user of a node's kubelet (what NodeRestriction confines)."""
    return f"system:node:{node_name}"


def issue(
    ca_cert_pem: str,
    ca_key_pem: str,
    common_name: str,
    *,
    groups: tuple[str, ...] = (),
    sans: tuple[str, ...] = (),
    now: datetime | None = None,
) -> KeyPair:
    """A new EC P-256 pair signed by the CA: a serving certificate when `sans` are given,
    otherwise a client certificate for user `common_name` in `groups`."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the cluster CA key must be an EC or RSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(minutes=5)
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if sans else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(sans)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )


def service_account_key() -> str:
    """A new RSA key (PEM) the API server signs service account tokens with."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem(private_key_pem: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def kubeconfig(server: str, ca_cert_pem: str, pair: KeyPair, *, name: str = "cluster") -> str:
    """A kubeconfig (JSON, which every YAML reader reads) for `server` with `pair`."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {"server": server, "certificate-authority-data": b64(ca_cert_pem)},
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {
                        "client-certificate-data": b64(pair.cert_pem),
                        "client-key-data": b64(pair.key_pem),
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
            "current-context": name,
        },
        indent=1,
    )


def _key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _sans(names: tuple[str, ...]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries

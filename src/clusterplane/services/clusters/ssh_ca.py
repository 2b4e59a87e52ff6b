"""A cluster's SSH certificate authority: minting it and signing users' public keys.

What it owns:
    `issue_ssh_ca` (a fresh Ed25519 CA: private key as OpenSSH PEM, public key as an
    ``authorized_keys`` line for sshd's `TrustedUserCAKeys`), `parse_user_key` (checks a
    user's public key line), and `sign_user_key` (an OpenSSH user certificate for one
    login, valid from `valid_after` to `valid_before`).

Invariants:
    * Pure functions: no database, no clock; validity comes from the caller's times.
    * A certificate names exactly one principal (the login) and carries exactly the
      extensions it is given (the cluster's policy, domain/ssh_policy.py); no critical
      options.
    * Only RSA (2048 bits or more), ECDSA and Ed25519 user keys are signed; a certificate
      presented as a key is refused.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    SSHCertificate,
    SSHCertificateBuilder,
    SSHCertificateType,
)

from clusterplane.errors import InvalidRequest

__all__ = ["SshCa", "UserKey", "issue_ssh_ca", "parse_user_key", "sign_user_key"]

CERTIFICATE_SUFFIX = "-cert-v01@openssh.com"


@dataclass(frozen=True)
class SshCa:
    private_key_pem: str
    """OpenSSH-format private key, unencrypted: seal it before storing."""
    public_key: str
    """``ssh-ed25519 AAAA... clusterplane-ssh-ca-<cluster_id>``, for TrustedUserCAKeys."""


@dataclass(frozen=True)
class UserKey:
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    fingerprint: str


def issue_ssh_ca(cluster_id: str) -> SshCa:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return SshCa(private, f"{public.decode('ascii')} clusterplane-ssh-ca-{cluster_id}")


def parse_user_key(line: str, *, param: str = "public_key") -> UserKey:
    """Read an OpenSSH public key line (``<type> <base64> [comment]``) or refuse it."""
    parts = line.strip().split()
    if len(parts) < 2:
        raise InvalidRequest(
            "must be an OpenSSH public key line such as 'ssh-ed25519 AAAA... me@laptop'",
            param=param,
        )
    if parts[0].endswith(CERTIFICATE_SUFFIX):
        raise InvalidRequest(
            "is an SSH certificate; send the public key it certifies (id_*.pub)", param=param
        )
    try:
        blob = f"{parts[0]} {parts[1]}".encode("ascii")
        if isinstance(serialization.load_ssh_public_identity(blob), SSHCertificate):
            raise InvalidRequest("is an SSH certificate, not a public key", param=param)
        key = serialization.load_ssh_public_key(blob)
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError):
        raise InvalidRequest(
            "is not a readable OpenSSH public key (RSA, ECDSA or Ed25519)", param=param
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InvalidRequest("RSA keys must have at least 2048 bits", param=param)
    elif not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise InvalidRequest("only RSA, ECDSA and Ed25519 keys can be signed", param=param)
    line_out = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    raw = base64.b64decode(line_out.split()[1])
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode("ascii").rstrip("=")
    return UserKey(key=key, fingerprint=f"SHA256:{digest}")


def sign_user_key(
    ca: str,
    user_key: UserKey,
    *,
    login: str,
    key_id: str,
    serial: int,
    valid_after: datetime,
    valid_before: datetime,
    extensions: tuple[str, ...],
) -> str:
    """An OpenSSH user certificate line (``...-cert-v01@openssh.com AAAA...``) carrying
    exactly `extensions` (OpenSSH extension names)."""
    ca_key = serialization.load_ssh_private_key(ca.encode("ascii"), password=None)
    if not isinstance(ca_key, ed25519.Ed25519PrivateKey):
        raise ValueError("a cluster SSH CA is an Ed25519 key")
    builder = (
        SSHCertificateBuilder()
        .public_key(user_key.key)
        .serial(serial)
        .type(SSHCertificateType.USER)
        .key_id(key_id.encode("utf-8"))
        .valid_principals([login.encode("utf-8")])
        .valid_after(int(valid_after.timestamp()))
        .valid_before(int(valid_before.timestamp()))
    )
    for name in sorted(extensions):
        builder = builder.add_extension(name.encode("ascii"), b"")
    return builder.sign(ca_key).public_bytes().decode("ascii")

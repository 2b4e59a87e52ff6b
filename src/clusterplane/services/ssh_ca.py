"""A cluster's SSH certificate authority: minting it and signing users' public keys.

What it owns:
    `issue_ssh_ca` (a fresh Ed25519 CA: private key as OpenSSH PEM, public key as an
    ``authorized_keys`` line for sshd's `TrustedUserCAKeys`), `parse_user_key` (checks a
    user's public key line), and `sign_user_key` (an OpenSSH user certificate for one
    login, valid from `valid_after` to `valid_before`).

Invariants:
    * Pure functions: no database, no clock; validity comes from the caller's times.
    * A certificate names exactly one principal (the login) and carries the usual
      interactive extensions (pty, agent and port forwarding); no critical options.
    * Only RSA (2048 bits or more), ECDSA and Ed25519 user keys are signed.
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
    SSHCertificateBuilder,
    SSHCertificateType,
)

from clusterplane.errors import InvalidRequest

__all__ = ["SshCa", "UserKey", "issue_ssh_ca", "parse_user_key", "sign_user_key"]

_EXTENSIONS = (
    b"permit-agent-forwarding",
    b"permit-port-forwarding",
    b"permit-pty",
    b"permit-user-rc",
    b"permit-X11-forwarding",
)


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
    try:
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode("ascii"))
    except (ValueError, UnsupportedAlgorithm, UnicodeEncodeError):
        raise InvalidRequest(
            "is not a readable OpenSSH public key (RSA, ECDSA or Ed25519)", param=param
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise InvalidRequest("RSA keys must have at least 2048 bits", param=param)
    elif not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise InvalidRequest("only RSA, ECDSA and Ed25519 keys can be signed", param=param)
    blob = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    raw = base64.b64decode(blob.split()[1])
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
) -> str:
    """An OpenSSH user certificate line (``...-cert-v01@openssh.com AAAA...``)."""
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
    for name in _EXTENSIONS:
        builder = builder.add_extension(name, b"")
    return builder.sign(ca_key).public_bytes().decode("ascii")

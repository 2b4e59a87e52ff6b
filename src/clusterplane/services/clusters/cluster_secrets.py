"""A cluster's stored secrets: its Kubernetes CA and client pair, its SSH CA, its kubeconfig.

What it owns:
    Issuing them at create (`provision`), adding an SSH CA when `ssh_ca_enabled` is
    switched on later (`ensure_ssh_ca`), replacing them all (`rotate`), reading the
    kubeconfig and the SSH CA back (`kube_config_text`, `ssh_ca_private_key`), and
    re-sealing every cluster under the current server key (`reseal_all`), and checking at
    start that the server holds the key the database was sealed with (`check_server_key`).
    A flavour's own secrets for the cluster's hosts (a Slurm munge key): `flavour_secret`.
    A flavour that runs the cluster's own Kubernetes API server: its CA pair for the
    control-plane host (`cluster_ca`), and the kubeconfig pointed at where that API
    server really listens (`point_kubeconfig`).

Invariants:
    * Private keys and the kubeconfig (which embeds the client key) are stored sealed by
      `SecretBox`, each bound to its cluster and field; certificates and the SSH CA's
      public key are public and stored as they are.
    * `ClusterRow.credentials` is always replaced by a new dict, never mutated in place
      (the JSON column does not track in-place changes).
    * A flavour secret is made once, sealed, and kept across `rotate` (a rotation of the
      API credentials must not break the daemons running on the cluster's hosts).
    * Rows written before encryption at rest (plain PEM under ``*_pem`` keys, a plain
      kubeconfig) still read; `reseal_all` converts them.
    * The database holds a check value sealed with the key of its first sealing server
      (`server_state` row ``credentials_key_check``); a server whose keys do not open it
      refuses to start, instead of sealing new clusters under a key of its own.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, ServerStateRow
from clusterplane.errors import NotFound
from clusterplane.services.access.sealing import SEALED_HEAD, SealError, SecretBox, sealed_key_id
from clusterplane.services.clusters.credentials import (
    ClusterCredentials,
    build_kubeconfig,
    issue_cluster_credentials,
)
from clusterplane.services.clusters.ssh_ca import issue_ssh_ca

__all__ = [
    "ForeignCredentialsKey",
    "Reseal",
    "Rotation",
    "check_server_key",
    "cluster_ca",
    "ensure_ssh_ca",
    "kube_config_text",
    "live_cluster",
    "point_kubeconfig",
    "provision",
    "reseal_all",
    "rotate",
    "seal_kube_config",
    "sealed_credentials",
    "ssh_ca_private_key",
    "ssh_ca_public_key",
]

_SEALED_FIELDS = ("ca_key", "client_key", "ssh_ca_key")
CHECK_KEY = "credentials_key_check"
_CHECK_TEXT = "clusterplane credentials key check v1"
_CHECK_CONTEXT = "server:credentials_key_check"


class ForeignCredentialsKey(SealError):
    """The database was sealed with a credentials key this server was not given."""


_LEGACY_PLAIN = {"ca_key_pem": "ca_key", "client_key_pem": "client_key"}


@dataclass(frozen=True)
class Rotation:
    cluster_id: str
    ca_fingerprint_sha256: str
    ssh_ca_public_key: str | None
    rotated_at: datetime


def _context(cluster_id: str, name: str) -> str:
    return f"cluster:{cluster_id}:{name}"


def ssh_enabled(cluster: ClusterRow) -> bool:
    return bool((cluster.cluster_config or {}).get("ssh_ca_enabled"))


def _store(
    cluster: ClusterRow, creds: ClusterCredentials, box: SecretBox, now: datetime
) -> dict[str, Any]:
    kube = build_kubeconfig(
        cluster_id=cluster.id,
        cluster_name=cluster.name,
        server_url=cluster.api_server_url,
        credentials=creds,
        oidc=cluster.oidc_config,
    )
    cluster.kube_config = seal_kube_config(cluster.id, kube, box)
    return sealed_credentials(cluster.id, creds, box, now)


def sealed_credentials(
    cluster_id: str, creds: ClusterCredentials, box: SecretBox, now: datetime
) -> dict[str, Any]:
    """The `credentials` a cluster stores: its certificates, and its keys sealed."""
    return {
        "ca_cert_pem": creds.ca_cert_pem,
        "client_cert_pem": creds.client_cert_pem,
        "ca_key": box.seal(creds.ca_key_pem, context=_context(cluster_id, "ca_key")),
        "client_key": box.seal(creds.client_key_pem, context=_context(cluster_id, "client_key")),
        "issued_at": now.isoformat(),
    }


def seal_kube_config(cluster_id: str, kube_config: str, box: SecretBox) -> str:
    """The `kube_config` a cluster stores: its kubeconfig's text, sealed."""
    return box.seal(kube_config, context=_context(cluster_id, "kube_config"))


def _with_new_ssh_ca(cluster: ClusterRow, stored: dict[str, Any], box: SecretBox) -> None:
    ca = issue_ssh_ca(cluster.id)
    stored["ssh_ca_public_key"] = ca.public_key
    stored["ssh_ca_key"] = box.seal(ca.private_key_pem, context=_context(cluster.id, "ssh_ca_key"))


def provision(cluster: ClusterRow, box: SecretBox, now: datetime) -> None:
    """Issue a new cluster's CA, client pair and kubeconfig, and its SSH CA when enabled."""
    creds = issue_cluster_credentials(cluster_id=cluster.id, now=now)
    stored = _store(cluster, creds, box, now)
    if ssh_enabled(cluster):
        _with_new_ssh_ca(cluster, stored, box)
    cluster.credentials = stored


def ensure_ssh_ca(cluster: ClusterRow, box: SecretBox) -> None:
    """Give the cluster an SSH CA if `ssh_ca_enabled` is on and it has none yet."""
    stored = dict(cluster.credentials or {})
    if ssh_enabled(cluster) and "ssh_ca_key" not in stored:
        _with_new_ssh_ca(cluster, stored, box)
        cluster.credentials = stored


def rotate(cluster: ClusterRow, box: SecretBox, now: datetime) -> Rotation:
    """New CA, client pair and kubeconfig; a new SSH CA too when SSH is enabled.

    Everything issued before stops verifying: old client certificates against the new
    CA, old SSH certificates against the new SSH CA.
    """
    creds = issue_cluster_credentials(cluster_id=cluster.id, now=now)
    stored = _store(cluster, creds, box, now)
    if ssh_enabled(cluster) or "ssh_ca_key" in (cluster.credentials or {}):
        _with_new_ssh_ca(cluster, stored, box)
    stored["rotated_at"] = now.isoformat()
    stored |= {k: v for k, v in (cluster.credentials or {}).items() if _is_flavour(k)}
    cluster.credentials = stored
    ca = x509.load_pem_x509_certificate(creds.ca_cert_pem.encode("ascii"))
    return Rotation(
        cluster_id=cluster.id,
        ca_fingerprint_sha256=hashlib.sha256(ca.public_bytes(Encoding.DER)).hexdigest(),
        ssh_ca_public_key=stored.get("ssh_ca_public_key"),
        rotated_at=now,
    )


def kube_config_text(cluster_id: str, stored: str, box: SecretBox) -> str:
    """The wire `kube_config` of a cluster from its stored (sealed) column."""
    if not stored:
        return ""
    return box.open(stored, context=_context(cluster_id, "kube_config"))


def ssh_ca_public_key(cluster: ClusterRow) -> str | None:
    value = (cluster.credentials or {}).get("ssh_ca_public_key")
    return str(value) if value else None


def ssh_ca_private_key(cluster: ClusterRow, box: SecretBox) -> str | None:
    sealed = (cluster.credentials or {}).get("ssh_ca_key")
    if not sealed:
        return None
    return box.open(str(sealed), context=_context(cluster.id, "ssh_ca_key"))


def _credentials(cluster: ClusterRow, box: SecretBox) -> ClusterCredentials:
    stored = cluster.credentials or {}

    def sealed(name: str) -> str:
        legacy = {v: k for k, v in _LEGACY_PLAIN.items()}.get(name)
        if legacy and legacy in stored:
            return str(stored[legacy])
        return box.open(str(stored[name]), context=_context(cluster.id, name))

    return ClusterCredentials(
        ca_cert_pem=str(stored["ca_cert_pem"]),
        ca_key_pem=sealed("ca_key"),
        client_cert_pem=str(stored["client_cert_pem"]),
        client_key_pem=sealed("client_key"),
    )


def cluster_ca(cluster: ClusterRow, box: SecretBox) -> tuple[str, str]:
    """The cluster CA's certificate and (opened) private key, PEM: for the host that runs
    the cluster's control plane only, as a secret of its assignment."""
    creds = _credentials(cluster, box)
    return creds.ca_cert_pem, creds.ca_key_pem


def point_kubeconfig(cluster: ClusterRow, box: SecretBox, server_url: str) -> bool:
    """Make the cluster's kubeconfig reach its API server at `server_url` (the credentials
    stay); False when it already did."""
    if cluster.api_server_url == server_url and cluster.kube_config:
        return False
    cluster.api_server_url = server_url
    kube = build_kubeconfig(
        cluster_id=cluster.id,
        cluster_name=cluster.name,
        server_url=server_url,
        credentials=_credentials(cluster, box),
        oidc=cluster.oidc_config,
    )
    cluster.kube_config = seal_kube_config(cluster.id, kube, box)
    return True


FLAVOUR_PREFIX = "flavour:"


def _is_flavour(name: str) -> bool:
    return name.startswith(FLAVOUR_PREFIX)


def flavour_secret(
    cluster: ClusterRow,
    name: str,
    box: SecretBox,
    *,
    nbytes: int = 128,
    make: Callable[[], str] | None = None,
) -> str:
    """The flavour's secret `name` for this cluster, made on first use: `make()`, or
    `nbytes` random bytes in base64."""
    key = FLAVOUR_PREFIX + name
    stored = dict(cluster.credentials or {})
    if key not in stored:
        value = make() if make else base64.b64encode(secrets.token_bytes(nbytes)).decode()
        stored[key] = box.seal(value, context=_context(cluster.id, key))
        cluster.credentials = stored
    return box.open(str(stored[key]), context=_context(cluster.id, key))


def _resealed(cluster: ClusterRow, box: SecretBox) -> bool:
    stored = dict(cluster.credentials or {})
    changed = False
    for legacy, name in _LEGACY_PLAIN.items():
        if legacy in stored:
            stored[name] = stored.pop(legacy)
    for name in (*_SEALED_FIELDS, *filter(_is_flavour, stored)):
        value = stored.get(name)
        if value and not box.is_current(str(value)):
            plain = box.open(str(value), context=_context(cluster.id, name))
            stored[name] = box.seal(plain, context=_context(cluster.id, name))
            changed = True
    if cluster.kube_config and not box.is_current(cluster.kube_config):
        plain = kube_config_text(cluster.id, cluster.kube_config, box)
        cluster.kube_config = seal_kube_config(cluster.id, plain, box)
        changed = True
    if changed or stored != (cluster.credentials or {}):
        cluster.credentials = stored
        return True
    return False


@dataclass(frozen=True)
class Reseal:
    resealed: int
    checked: int
    unreadable: list[str]  # clusters no configured key opens: left as they are


def reseal_all(session: Session, box: SecretBox) -> Reseal:
    """Re-seal every live cluster's secrets, and the key check, under the current key."""
    rows = session.scalars(select(ClusterRow).where(ClusterRow.deleted_at.is_(None)))
    checked = resealed = 0
    unreadable: list[str] = []
    for cluster in rows:
        checked += 1
        try:
            if _resealed(cluster, box):  # assigns only once everything opened
                resealed += 1
        except SealError:
            unreadable.append(cluster.id)
    _write_check(session, box)
    return Reseal(resealed=resealed, checked=checked, unreadable=unreadable)


def _write_check(session: Session, box: SecretBox) -> None:
    if box.key_id is None:
        return
    row = session.get(ServerStateRow, CHECK_KEY)
    value = box.seal(_CHECK_TEXT, context=_CHECK_CONTEXT)
    if row is None:
        session.add(ServerStateRow(key=CHECK_KEY, value=value))
    else:
        row.value = value


def _refusal(key_id: str) -> ForeignCredentialsKey:
    return ForeignCredentialsKey(
        f"this database's cluster credentials are sealed with credentials key {key_id}, "
        "which this server was not given (a server started without "
        "CLUSTERPLANE_CREDENTIALS_KEY keeps its key in .clusterplane/credentials-key under "
        "the directory it runs in). Start it with that key in CLUSTERPLANE_CREDENTIALS_KEY; "
        "to move to a new key, put the old one in CLUSTERPLANE_PREVIOUS_CREDENTIALS_KEYS "
        "and call POST /admin/v1/credentials/reseal"
    )


def check_server_key(session: Session, box: SecretBox) -> None:
    """Refuse (`ForeignCredentialsKey`) a server whose keys do not open this database's
    sealed values; on first use, record the check value under the current key."""
    row = session.get(ServerStateRow, CHECK_KEY)
    if row is not None:
        key_id = sealed_key_id(row.value)
        if key_id is not None and key_id not in box.key_ids():
            raise _refusal(key_id)
        return
    heads = session.scalars(
        select(func.substr(ClusterRow.kube_config, 1, SEALED_HEAD))
        .where(ClusterRow.deleted_at.is_(None))
        .distinct()
    )  # the keys' names only: not every cluster's kubeconfig in memory at once
    for head in heads:
        key_id = sealed_key_id(head or "")
        if key_id is not None and key_id not in box.key_ids():
            raise _refusal(key_id)
    _write_check(session, box)


def live_cluster(session: Session, cluster_id: str) -> ClusterRow:
    """Any live cluster, whatever its project (for the operator's API)."""
    row = session.get(ClusterRow, cluster_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
    return row

"""SSH access to a cluster's nodes: short-lived user certificates from the cluster's SSH CA.

What it owns:
    `sign_certificate`, the use case behind
    `POST /v1/compute/clusters/{cluster_id}/ssh-certificates`: a caller who can see the
    cluster sends an OpenSSH public key and a login, and gets an OpenSSH user certificate
    for that login, signed by the cluster's SSH CA, valid for a short time (settings:
    `credentials.ssh_certificate_seconds`, at most `ssh_certificate_max_seconds`).
    `jumphost_name` is the bastion a client goes through when `jumphost_enabled`.

Invariants:
    * Only clusters with `cluster_config.ssh_ca_enabled` sign; a cluster being deleted
      signs nothing.
    * Validity starts one minute before `now` (clock skew between the server and sshd)
      and never exceeds the operator's maximum.
    * The login and the certificate's extensions follow the cluster's SSH policy
      (domain/ssh_policy.py: no root and no forwarding unless the operator allows them);
      a login the policy refuses is a 403.
    * `now` is wall-clock time (sshd checks validity against its own clock), whatever
      the fleet clock says.
    * Every signature is recorded as a cluster event (login, key fingerprint, serial).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow
from clusterplane.domain.enums import ClusterPhase
from clusterplane.domain.ssh_policy import SshPolicy
from clusterplane.errors import FailedPrecondition, InvalidRequest, PermissionDenied
from clusterplane.services.access.auth import Caller
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.clusters.cluster_secrets import (
    ensure_ssh_ca,
    ssh_ca_private_key,
    ssh_ca_public_key,
    ssh_enabled,
)
from clusterplane.services.clusters.clusters import get_cluster
from clusterplane.services.clusters.ssh_ca import parse_user_key, sign_user_key
from clusterplane.services.events.events import cluster_scope, record_event
from clusterplane.settings import CredentialSettings

__all__ = ["SignedCertificate", "jumphost_name", "sign_certificate"]

CLOCK_SKEW = timedelta(minutes=1)


@dataclass(frozen=True)
class SignedCertificate:
    cluster_id: str
    login: str
    certificate: str
    serial: int
    key_id: str
    valid_after: datetime
    valid_before: datetime
    ca_public_key: str
    jumphost: str | None


def jumphost_name(cluster: ClusterRow, base_domain: str) -> str | None:
    if not (cluster.cluster_config or {}).get("jumphost_enabled"):
        return None
    return f"ssh.{cluster.id}.{cluster.region}.{base_domain.strip('.')}"


def sign_certificate(
    session: Session,
    caller: Caller,
    cluster_id: str,
    *,
    public_key: str,
    login: str,
    valid_seconds: int | None,
    box: SecretBox,
    settings: CredentialSettings,
    base_domain: str,
    now: datetime,
) -> SignedCertificate:
    cluster = get_cluster(session, caller, cluster_id)
    if cluster.phase == ClusterPhase.DELETING:
        raise FailedPrecondition("the cluster is being deleted", param="cluster_id")
    if not ssh_enabled(cluster):
        raise FailedPrecondition(
            "the cluster has no SSH certificate authority; "
            "set cluster_config.ssh_ca_enabled to true first",
            param="cluster_id",
        )
    policy = SshPolicy.from_dict(cluster.ssh_policy)
    refusal = policy.refusal(login)
    if refusal is not None:
        raise PermissionDenied(refusal, param="login")
    seconds = settings.ssh_certificate_seconds if valid_seconds is None else valid_seconds
    if seconds > settings.ssh_certificate_max_seconds:
        raise InvalidRequest(
            f"at most {settings.ssh_certificate_max_seconds} seconds on this server",
            param="valid_seconds",
        )
    user_key = parse_user_key(public_key)
    ensure_ssh_ca(cluster, box)
    ca_key = ssh_ca_private_key(cluster, box)
    ca_public = ssh_ca_public_key(cluster)
    if ca_key is None or ca_public is None:
        raise RuntimeError(f"cluster {cluster.id} has ssh_ca_enabled but no SSH CA")
    jumphost = jumphost_name(cluster, base_domain)
    serial = secrets.randbits(63)
    key_id = f"{caller.user_name}@{cluster.id}:{login}:{user_key.fingerprint}"
    valid_after = now - CLOCK_SKEW
    valid_before = now + timedelta(seconds=seconds)
    certificate = sign_user_key(
        ca_key,
        user_key,
        login=login,
        key_id=key_id,
        serial=serial,
        valid_after=valid_after,
        valid_before=valid_before,
        extensions=policy.extensions(jumphost=jumphost is not None),
    )
    record_event(
        session,
        object_type="cluster",
        object_id=cluster.id,
        kind="ssh_certificate",
        message=f"login {login} for {user_key.fingerprint}, serial {serial}, {seconds} s",
        at=now,
        scope=cluster_scope(cluster),
    )
    return SignedCertificate(
        cluster_id=cluster.id,
        login=login,
        certificate=certificate,
        serial=serial,
        key_id=key_id,
        valid_after=valid_after,
        valid_before=valid_before,
        ca_public_key=ca_public,
        jumphost=jumphost,
    )

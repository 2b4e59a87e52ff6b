"""`/admin/v1/...` credential endpoints (admin keys only): rotate a cluster's credentials,
read its SSH CA, set its SSH policy, and re-seal every stored secret under the current
server key.

    POST /admin/v1/clusters/{cluster_id}/credentials/rotate
        New Kubernetes CA, client pair and kubeconfig (and a new SSH CA when the cluster
        has one): everything issued before stops verifying.
    GET  /admin/v1/clusters/{cluster_id}/ssh-ca
        The SSH CA's public key, for sshd's TrustedUserCAKeys on the cluster's nodes.
    GET|PUT /admin/v1/clusters/{cluster_id}/ssh-policy
        Which logins the cluster's SSH certificates may name and which extensions they
        carry (domain/ssh_policy.py; defaults: no root, a pty, no forwarding).
    POST /admin/v1/credentials/reseal
        After CLUSTERPLANE_CREDENTIALS_KEY changed (the old key moved to
        CLUSTERPLANE_PREVIOUS_CREDENTIALS_KEYS): seal every secret with the new key;
        `unreadable` lists clusters no configured key opens (left as they are).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.routers.admin import admin
from clusterplane.api.schemas.ssh import SshPolicyRequest
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.domain.ssh_policy import SshPolicy
from clusterplane.errors import FailedPrecondition
from clusterplane.services.clusters import cluster_secrets

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(admin)])


@router.post("/clusters/{cluster_id}/credentials/rotate")
def rotate_credentials(cluster_id: str, request: Request) -> Response:
    state = api_state(request)
    now = state.wall_clock.now()  # certificates are checked against real time
    with transaction(state.sessions) as session:
        cluster = cluster_secrets.live_cluster(session, cluster_id)
        rotation = cluster_secrets.rotate(cluster, state.secrets, now)
        cluster.updated_at = state.clock.now()
        cluster.next_reconcile_at = state.clock.now()  # its nodes trust the new SSH CA
    state.nudge()
    return presenters.json_response(
        {
            "cluster_id": rotation.cluster_id,
            "ca_fingerprint_sha256": rotation.ca_fingerprint_sha256,
            "ssh_ca_public_key": rotation.ssh_ca_public_key,
            "rotated_at": rotation.rotated_at,
        }
    )


@router.get("/clusters/{cluster_id}/ssh-ca")
def ssh_ca(cluster_id: str, request: Request) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        cluster = cluster_secrets.live_cluster(session, cluster_id)
        public_key = cluster_secrets.ssh_ca_public_key(cluster)
    if public_key is None:
        raise FailedPrecondition(
            "the cluster has no SSH CA (cluster_config.ssh_ca_enabled is off)",
            param="cluster_id",
        )
    return presenters.json_response({"cluster_id": cluster_id, "public_key": public_key})


@router.get("/clusters/{cluster_id}/ssh-policy")
def get_ssh_policy(cluster_id: str, request: Request) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        cluster = cluster_secrets.live_cluster(session, cluster_id)
        policy = SshPolicy.from_dict(cluster.ssh_policy)
    return presenters.json_response({"cluster_id": cluster_id, **policy.to_dict()})


@router.put("/clusters/{cluster_id}/ssh-policy", openapi_extra=request_body(SshPolicyRequest))
def set_ssh_policy(
    cluster_id: str, request: Request, body: RawBody = Depends(raw_body)
) -> Response:
    """Replace the policy; certificates signed from now on follow it."""
    req = validate(SshPolicyRequest, body)
    policy = SshPolicy.from_dict(req.model_dump())
    state = api_state(request)
    with transaction(state.sessions) as session:
        cluster = cluster_secrets.live_cluster(session, cluster_id)
        cluster.ssh_policy = policy.to_dict()
        cluster.updated_at = state.clock.now()
        cluster.next_reconcile_at = state.clock.now()  # its nodes' accounts follow the logins
    state.nudge()
    return presenters.json_response({"cluster_id": cluster_id, **policy.to_dict()})


@router.post("/credentials/reseal")
def reseal(request: Request) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        done = cluster_secrets.reseal_all(session, state.secrets)
    return presenters.json_response(
        {
            "resealed": done.resealed,
            "checked": done.checked,
            "unreadable": done.unreadable,
            "key_id": state.secrets.key_id,
        }
    )

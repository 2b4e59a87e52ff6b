"""`/admin/v1/...` credential endpoints (admin keys only): rotate a cluster's credentials,
read its SSH CA, and re-seal every stored secret under the current server key.

    POST /admin/v1/clusters/{cluster_id}/credentials/rotate
        New Kubernetes CA, client pair and kubeconfig (and a new SSH CA when the cluster
        has one): everything issued before stops verifying.
    GET  /admin/v1/clusters/{cluster_id}/ssh-ca
        The SSH CA's public key, for sshd's TrustedUserCAKeys on the cluster's nodes.
    POST /admin/v1/credentials/reseal
        After CLUSTERPLANE_CREDENTIALS_KEY changed (the old key moved to
        CLUSTERPLANE_PREVIOUS_CREDENTIALS_KEYS): seal every secret with the new key.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from clusterplane.api import presenters
from clusterplane.api.deps import api_state
from clusterplane.api.routers.admin import admin
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.errors import FailedPrecondition
from clusterplane.services import cluster_secrets

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(admin)])


@router.post("/clusters/{cluster_id}/credentials/rotate")
def rotate_credentials(cluster_id: str, request: Request) -> Response:
    state = api_state(request)
    now = state.clock.now()
    with transaction(state.sessions) as session:
        cluster = cluster_secrets.live_cluster(session, cluster_id)
        rotation = cluster_secrets.rotate(cluster, state.secrets, now)
        cluster.updated_at = now
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


@router.post("/credentials/reseal")
def reseal(request: Request) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        resealed, checked = cluster_secrets.reseal_all(session, state.secrets)
    return presenters.json_response(
        {"resealed": resealed, "checked": checked, "key_id": state.secrets.key_id}
    )

"""`/v1/compute/clusters/{cluster_id}/ssh-certificates`: sign a user's SSH key (extension).

Any caller who can see the cluster may ask, for a login and with the extensions the
cluster's SSH policy allows; `clusterplane ssh` uses it. See
services/clusters/ssh_access.py for the rules.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, current_caller, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.schemas.ssh import SshCertificateRequest, SshCertificateResponse
from clusterplane.db.engine import transaction
from clusterplane.services.access.auth import Caller
from clusterplane.services.clusters import ssh_access

router = APIRouter(tags=["ssh"])


@router.post(
    "/compute/clusters/{cluster_id}/ssh-certificates",
    response_model=SshCertificateResponse,
    openapi_extra=request_body(SshCertificateRequest),
)
def sign_ssh_certificate(
    cluster_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(current_caller),
) -> Response:
    req = validate(SshCertificateRequest, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        signed = ssh_access.sign_certificate(
            session,
            caller,
            cluster_id,
            public_key=req.public_key,
            login=req.login,
            valid_seconds=req.valid_seconds,
            box=state.secrets,
            settings=state.settings.credentials,
            base_domain=state.settings.server.cluster_base_domain,
            now=state.wall_clock.now(),  # sshd checks validity against real time
        )
    return presenters.json_response(
        {
            "cluster_id": signed.cluster_id,
            "login": signed.login,
            "certificate": signed.certificate,
            "serial": signed.serial,
            "key_id": signed.key_id,
            "valid_after": signed.valid_after,
            "valid_before": signed.valid_before,
            "ca_public_key": signed.ca_public_key,
            "jumphost": signed.jumphost,
        }
    )

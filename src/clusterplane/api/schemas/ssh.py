"""Wire models of clusterplane's SSH certificate endpoint (an extension, not in Together's API).

`POST /v1/compute/clusters/{cluster_id}/ssh-certificates` takes `SshCertificateRequest`
and answers `SshCertificateResponse`; errors use the same envelope as every endpoint. The
operator's `PUT /admin/v1/clusters/{cluster_id}/ssh-policy` takes `SshPolicyRequest`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from clusterplane.api.schemas.common import UtcDatetime, WireRequest, WireResponse

__all__ = ["SshCertificateRequest", "SshCertificateResponse", "SshPolicyRequest"]

_LOGIN = re.compile(r"[a-z_][a-z0-9_.-]{0,31}", re.ASCII)


def _check_login(value: str) -> str:
    if not _LOGIN.fullmatch(value):
        raise PydanticCustomError(
            "posix_login",
            "must be a POSIX login: a lowercase letter or '_', then up to 31 of a-z 0-9 _ . -",
        )
    return value


def _check_key_line(value: str) -> str:
    if any(ch < " " and ch != "\n" for ch in value) or "\x7f" in value:
        raise PydanticCustomError("string_control", "must not contain control characters")
    if "\n" in value.strip():
        raise PydanticCustomError("ssh_public_key", "must be a single public key line")
    return value


class SshCertificateRequest(WireRequest):
    public_key: Annotated[
        StrictStr,
        StringConstraints(min_length=1, max_length=16_384),
        AfterValidator(_check_key_line),
    ]
    """An OpenSSH public key line: ``ssh-ed25519 AAAA... me@laptop``."""
    login: Annotated[StrictStr, AfterValidator(_check_login)] = "ubuntu"
    """The account on the nodes; the certificate's only principal."""
    valid_seconds: Annotated[StrictInt, Field(ge=60, le=604_800)] | None = None
    """Lifetime; the server's default when absent, never above the server's maximum."""


class SshCertificateResponse(WireResponse):
    cluster_id: str
    login: str
    certificate: str
    serial: int
    key_id: str
    valid_after: UtcDatetime
    valid_before: UtcDatetime
    ca_public_key: str
    jumphost: str | None = None


Login = Annotated[StrictStr, AfterValidator(_check_login)]


class SshPolicyRequest(BaseModel):
    """A cluster's SSH policy; an absent field takes its safe default (domain/ssh_policy.py).
    An operator's body: unknown fields are refused, so a misspelt switch is not ignored."""

    model_config = ConfigDict(extra="forbid")

    allowed_logins: Annotated[list[Login], Field(max_length=64)] | None = None
    """Exactly these logins (``root`` only if listed); null: any login but ``root``."""
    permit_pty: StrictBool = True
    permit_agent_forwarding: StrictBool = False
    permit_port_forwarding: StrictBool | None = None
    """null: only on a cluster with a jump host (ProxyJump needs it there)."""
    permit_x11_forwarding: StrictBool = False
    permit_user_rc: StrictBool = False

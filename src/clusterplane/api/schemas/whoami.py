"""Wire models of the identity endpoints the CLIs call at startup (spec §1.8).

Owns `WhoamiV3Response` (`GET /v3/whoami`, the `project_api_key` variant of the 3.1.1
discriminated union, `together.types.WhoamiProjectAPIKey`) and `WhoamiV1Response`
(`GET /v1/whoami`, the flat object the ~2.30-2.40 CLIs read).
"""

from __future__ import annotations

from typing import Literal

from clusterplane.api.schemas.common import WireResponse

__all__ = [
    "WhoamiApiKey",
    "WhoamiOrganization",
    "WhoamiProject",
    "WhoamiV1Response",
    "WhoamiV3Response",
]


class WhoamiApiKey(WireResponse):
    id: str


class WhoamiOrganization(WireResponse):
    id: str
    name: str


class WhoamiProject(WireResponse):
    id: str
    name: str
    slug: str


class WhoamiV3Response(WireResponse):
    """`{"type": "project_api_key", "api_key": {id}, "organization": {..}, "project": {..}}`."""

    type: Literal["project_api_key"] = "project_api_key"
    api_key: WhoamiApiKey
    organization: WhoamiOrganization
    project: WhoamiProject


class WhoamiV1Response(WireResponse):
    """The flat 2.x shape; the CLI only reads `project_id`."""

    api_key_id: str
    organization_id: str
    organization_name: str
    project_id: str
    project_name: str
    project_slug: str
    user_id: str | None = None

"""Wire models of clusterplane's own event log and webhook API (`/v1/clusterplane/...`).

These endpoints are extensions, not part of Together's API; errors use the same envelope
as every other route. Requests refuse unknown fields (a typo must not pass silently).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, StringConstraints

from clusterplane.api.schemas.common import Identifier, UtcDatetime, WireResponse
from clusterplane.domain.webhooks import MAX_URL_CHARS, DeliveryState

__all__ = [
    "AttemptResponse",
    "CreateWebhookRequest",
    "DeliveryListResponse",
    "DeliveryResponse",
    "EventListResponse",
    "EventResponse",
    "UpdateWebhookRequest",
    "WebhookCreatedResponse",
    "WebhookListResponse",
    "WebhookResponse",
]

Url = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_URL_CHARS)]
KindPattern = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]
Kinds = Annotated[list[KindPattern], Field(min_length=1, max_length=20)]
Description = Annotated[StrictStr, StringConstraints(max_length=256)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateWebhookRequest(_Body):
    url: Url
    # Event kinds sent to it: `cluster.phase`, `cluster.*` or `*` (docs/webhooks.md).
    kinds: Kinds
    description: Description = ""
    # The project whose events it gets (default: the key's own); admin keys may instead
    # ask for a fleet-wide endpoint, sent every event.
    project_id: Identifier | None = None
    fleet: StrictBool = False
    enabled: StrictBool = True


class UpdateWebhookRequest(_Body):
    url: Url | None = None
    kinds: Kinds | None = None
    description: Description | None = None
    enabled: StrictBool | None = None


class EventResponse(WireResponse):
    id: int
    kind: str
    object_type: str
    object_id: str
    message: str
    time: UtcDatetime
    project_id: str | None
    cluster_id: str | None
    node_id: str | None
    instance_id: str | None


class EventListResponse(WireResponse):
    events: list[EventResponse]
    next_cursor: str | None
    has_more: bool


class WebhookResponse(WireResponse):
    id: str
    project_id: str | None
    fleet: bool
    url: str
    kinds: list[str]
    description: str
    enabled: bool
    dropped_events: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


class WebhookCreatedResponse(WebhookResponse):
    # The signing secret: shown in this answer only.
    secret: str


class WebhookListResponse(WireResponse):
    webhooks: list[WebhookResponse]
    next_cursor: str | None


class AttemptResponse(WireResponse):
    at: str
    duration_ms: int
    status_code: int | None
    error: str | None


class DeliveryResponse(WireResponse):
    id: str
    webhook_id: str
    event_id: int
    kind: str
    state: DeliveryState
    failures: int
    replays: int
    attempts: list[AttemptResponse]
    next_attempt_at: UtcDatetime | None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None


class DeliveryListResponse(WireResponse):
    deliveries: list[DeliveryResponse]
    next_cursor: str | None

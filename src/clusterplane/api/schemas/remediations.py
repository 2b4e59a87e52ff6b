"""Wire models of node remediations (spec §2.8, §3.6).

Owns the create/approve/reject request bodies (cancel has none), the `Remediation`
response with its linked passive-health-check alerts, and the paged list. Field names and
required-ness match `together` 3.1.1 (`types/clusters/remediation*.py`). Rules that need
no database live here: an approval may not override the mode to HOST_POWER_CYCLE.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator
from pydantic_core import PydanticCustomError

from clusterplane.api.schemas.common import FreeText, UtcDatetime, WireRequest, WireResponse
from clusterplane.domain.enums import RemediationMode, RemediationState, RemediationTrigger

__all__ = [
    "AlertSeverity",
    "ApproveRemediationRequest",
    "CreateRemediationRequest",
    "LinkedAlertAnnotationResponse",
    "LinkedAlertResponse",
    "RejectRemediationRequest",
    "RemediationListResponse",
    "RemediationResponse",
    "SlurmNodeUnavailableResponse",
    "XidAnnotationResponse",
    "XidEventResponse",
]

AlertSeverity = Literal["PHC_SEVERITY_INFO", "PHC_SEVERITY_WARNING", "PHC_SEVERITY_CRITICAL"]
"""`LinkedAlert.severity` (spec §4.14)."""


class CreateRemediationRequest(WireRequest):
    """Body of `POST .../instances/{instance_id}/remediations`."""

    mode: RemediationMode
    reason: FreeText | None = None


class ApproveRemediationRequest(WireRequest):
    """Body of `POST .../remediations/{id}/approve`; `mode` overrides the kept mode."""

    comment: FreeText | None = None
    mode: RemediationMode | None = None

    @field_validator("mode")
    @classmethod
    def mode_is_a_valid_override(cls, value: RemediationMode | None) -> RemediationMode | None:
        if value is RemediationMode.HOST_POWER_CYCLE:
            raise PydanticCustomError(
                "mode_override",
                "REMEDIATION_MODE_HOST_POWER_CYCLE cannot be used as an approval override; "
                "create a host power-cycle remediation instead",
            )
        return value


class RejectRemediationRequest(WireRequest):
    """Body of `POST .../remediations/{id}/reject`."""

    comment: FreeText | None = None


class SlurmNodeUnavailableResponse(WireResponse):
    reason: str


class XidEventResponse(WireResponse):
    xid_code: str
    mnemonic: str
    count: int


class XidAnnotationResponse(WireResponse):
    events: list[XidEventResponse]


class LinkedAlertAnnotationResponse(WireResponse):
    """`LinkedAlertAnnotation`: the structured description of an alert."""

    title: str
    description: str
    summary_line: str
    slurm_node_unavailable: SlurmNodeUnavailableResponse | None = None
    xid: XidAnnotationResponse | None = None


class LinkedAlertResponse(WireResponse):
    """`LinkedAlert`: a passive health-check alert tied to a remediation."""

    passive_health_check_alert_id: str
    alert_name: str
    severity: AlertSeverity
    started_at: UtcDatetime
    target_vm: str
    cluster_id: str
    annotations: dict[str, str]
    annotation: LinkedAlertAnnotationResponse
    resolved_at: UtcDatetime | None = None
    instance_id: str | None = None
    node_remediation_intent_id: str | None = None


class RemediationResponse(WireResponse):
    """`Remediation`: a request to repair one GPU worker instance."""

    id: str
    cluster_id: str
    instance_id: str
    mode: RemediationMode
    state: RemediationState
    trigger: RemediationTrigger
    instance_name: str | None = None
    reason: str | None = None
    requested_by: str | None = None
    reviewed_by: str | None = None
    review_time: UtcDatetime | None = None
    review_comment: str | None = None
    create_time: UtcDatetime | None = None
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None
    update_time: UtcDatetime | None = None
    error_message: str | None = None
    active_health_check_run_id: str | None = None
    passive_health_check_event_id: str | None = None
    linked_alerts: list[LinkedAlertResponse] | None = None


class RemediationListResponse(WireResponse):
    """`RemediationList`; the last page has `has_next=false`, `next_page_token=""`."""

    remediations: list[RemediationResponse]
    has_next: bool
    next_page_token: str

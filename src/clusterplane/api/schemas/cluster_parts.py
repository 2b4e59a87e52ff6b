"""Sub-objects of the cluster wire models (spec §3.2-§3.5, §3.8).

Owns the pieces `clusters.py` assembles: add-ons (create/update/response, config and
state), `cluster_config` (request and response), `oidc_config` (request and response),
`acceptance_tests_params`, nodes with their phase histories, and node lifecycle events.
Request pieces derive from `WireRequest` (null = absent, unknown keys ignored); response
pieces mirror `together` 3.1.1 `types/cluster.py` name for name.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from cryptography import x509
from pydantic import AfterValidator, Field, StrictBool, StrictInt, StrictStr, StringConstraints
from pydantic_core import PydanticCustomError

from clusterplane.api.schemas.common import (
    Identifier,
    Label,
    Script,
    Toggle,
    UtcDatetime,
    Version,
    WireRequest,
    WireResponse,
)
from clusterplane.api.schemas.remediations import RemediationResponse
from clusterplane.domain.enums import (
    ClusterPhase,
    DcgmDiagLevel,
    LoadBalancer,
    NodeLifecycleReason,
    NodePhase,
)

__all__ = [
    "AcceptanceTestsParams",
    "AddOnConfig",
    "AddOnCreate",
    "AddOnResponse",
    "AddOnState",
    "AddOnStateEntry",
    "ClusterConfigRequest",
    "ClusterConfigResponse",
    "ControlPlaneNodeResponse",
    "GPUWorkerNodeResponse",
    "NodeLifecycleEventResponse",
    "NodePhaseTransitionResponse",
    "OidcConfigRequest",
    "OidcConfigResponse",
    "PhaseTransitionResponse",
    "SlurmStartupScripts",
]


# --- add-ons -----------------------------------------------------------------------------


class AddOnConfig(WireRequest):
    """Per-add-on switches, `{"headlamp": {"enabled": true}}`; used in requests and responses."""

    dashboard: Toggle | None = None
    headlamp: Toggle | None = None
    ingress: Toggle | None = None
    slurm_web: Toggle | None = None


class AddOnCreate(WireRequest):
    """An add-on to enable at create: `{"add_on_type", "name", "config"?}`."""

    name: Label
    add_on_type: Identifier
    config: AddOnConfig | None = None


class AddOnUpdate(WireRequest):
    """An existing add-on (by `name`) and the config to merge into it."""

    name: Label
    config: AddOnConfig | None = None


class AddOnStateEntry(WireResponse):
    """Per-add-on state; an empty object (reserved by the API). clusterplane lists an
    add-on's key in `state` once the driver has applied its current config."""


class AddOnState(WireResponse):
    dashboard: AddOnStateEntry | None = None
    headlamp: AddOnStateEntry | None = None
    ingress: AddOnStateEntry | None = None
    slurm_web: AddOnStateEntry | None = None


class AddOnResponse(WireResponse):
    """`AddOn`; only add-ons whose config is enabled are listed on a cluster."""

    name: str
    add_on_type: str
    config: AddOnConfig
    state: AddOnState


# --- cluster_config ----------------------------------------------------------------------


class SlurmStartupScripts(WireRequest):
    """Optional Slurm lifecycle scripts, each up to 64 KiB."""

    worker_prolog: Script | None = None
    worker_epilog: Script | None = None
    controller_prolog: Script | None = None
    controller_epilog: Script | None = None
    login_init_script: Script | None = None
    nodeset_init_script: Script | None = None
    extra_slurm_conf: Script | None = None


class ClusterConfigRequest(WireRequest):
    """`cluster_config` in create/update; `load_balancer` is required whenever it is sent."""

    load_balancer: LoadBalancer
    kubernetes_dashboard_enabled: StrictBool | None = None
    jumphost_enabled: StrictBool | None = None
    ssh_ca_enabled: StrictBool | None = None
    ingress: Toggle | None = None
    observability: Toggle | None = None
    gpu_operator_version: Version | None = None
    network_operator_version: Version | None = None
    slurm_startup_scripts: SlurmStartupScripts | None = None


class ClusterConfigResponse(WireResponse):
    """`ClusterConfig` as returned on a cluster."""

    load_balancer: LoadBalancer
    kubernetes_dashboard_enabled: bool | None = None
    jumphost_enabled: bool | None = None
    ssh_ca_enabled: bool | None = None
    ingress: Toggle | None = None
    observability: Toggle | None = None
    gpu_operator_version: str | None = None
    network_operator_version: str | None = None
    slurm_startup_scripts: SlurmStartupScripts | None = None


# --- oidc_config -------------------------------------------------------------------------


def _check_https_url(value: str) -> str:
    problem = "must be an https:// URL such as https://accounts.google.com"
    if any(ch.isspace() or ch < " " or ch == "\x7f" for ch in value):
        raise PydanticCustomError("https_url", problem)
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError as exc:
        raise PydanticCustomError("https_url", problem) from exc
    if parts.scheme != "https" or not parts.hostname:
        raise PydanticCustomError("https_url", problem)
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise PydanticCustomError(
            "issuer_url", "an OIDC issuer URL has no user info, query or fragment"
        )
    return value


def _check_prefix(value: str) -> str:
    if any(ch.isspace() or ch < " " or "\x7f" <= ch <= "\x9f" for ch in value):
        raise PydanticCustomError(
            "string_token", "must not contain whitespace or control characters"
        )
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise PydanticCustomError("string_unicode", "must be valid Unicode text")
    return value


def _check_pem_ca(value: str) -> str:
    problem = "must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)"
    if "-----BEGIN CERTIFICATE-----" not in value:
        raise PydanticCustomError("pem_certificate", problem)
    try:
        certificates = x509.load_pem_x509_certificates(value.encode("utf-8"))
    except ValueError as exc:
        raise PydanticCustomError("pem_certificate", problem) from exc
    if not certificates:
        raise PydanticCustomError("pem_certificate", problem)
    return value


def _check_claim(value: str) -> str:
    if not _CLAIM.fullmatch(value):
        raise PydanticCustomError(
            "oidc_claim", "must be a claim name: letters, digits, '_', '-', ':', '.' or '/'"
        )
    return value


_CLAIM = re.compile(r"[A-Za-z0-9_:./-]{1,128}", re.ASCII)

HttpsUrl = Annotated[
    StrictStr, StringConstraints(min_length=1, max_length=2048), AfterValidator(_check_https_url)
]
ClaimPrefix = Annotated[StrictStr, StringConstraints(max_length=128), AfterValidator(_check_prefix)]
ClaimName = Annotated[StrictStr, AfterValidator(_check_claim)]
PemCertificates = Annotated[
    StrictStr, StringConstraints(max_length=65_536), AfterValidator(_check_pem_ca)
]


class OidcConfigRequest(WireRequest):
    """`oidc_config` in a create: every key but `ca_cert` is required."""

    issuer_url: HttpsUrl
    client_id: Identifier
    username_claim: ClaimName
    username_prefix: ClaimPrefix
    group_claim: ClaimName
    group_prefix: ClaimPrefix
    ca_cert: PemCertificates | None = None


class OidcConfigResponse(WireResponse):
    """`OidcConfig` as returned on a cluster."""

    issuer_url: str
    client_id: str
    username_claim: str
    username_prefix: str
    group_claim: str
    group_prefix: str
    ca_cert: str | None = None


# --- acceptance tests --------------------------------------------------------------------


class AcceptanceTestsParams(WireRequest):
    """Bring-up acceptance-test options; they apply when `enabled` is true."""

    enabled: StrictBool | None = None
    dcgm_diag_level: DcgmDiagLevel | None = None
    dcgm_diag_skipped: StrictBool | None = None
    gpu_burn_duration: Annotated[StrictInt, Field(ge=0, le=86_400)] | None = None
    gpu_burn_skipped: StrictBool | None = None
    nccl_single_node_skipped: StrictBool | None = None
    nccl_multi_node_skipped: StrictBool | None = None
    storage_skipped: StrictBool | None = None


# --- nodes -------------------------------------------------------------------------------


class PhaseTransitionResponse(WireResponse):
    """A cluster-level phase change (`ClusterPhaseTransition`)."""

    phase: ClusterPhase
    transition_time: UtcDatetime


class NodePhaseTransitionResponse(WireResponse):
    """A node-level phase change (`NodePhaseTransition`)."""

    phase: NodePhase
    transition_time: UtcDatetime


class ControlPlaneNodeResponse(WireResponse):
    node_id: str
    # Together's OpenAPI file requires it (the SDK ignores it): the node's name, as node_id.
    node_name: str
    host_name: str
    status: str
    num_cpu_cores: int
    memory_gib: float
    network: str
    phase_transitions: list[NodePhaseTransitionResponse]
    public_ipv4: str | None = None


class GPUWorkerNodeResponse(WireResponse):
    """A GPU worker; also the element of `deleted_gpu_worker_nodes` (with `deleted_at`)."""

    node_id: str
    # Together's OpenAPI file requires it (the SDK ignores it): the node's name, as node_id.
    node_name: str
    host_name: str
    status: str
    num_cpu_cores: int
    num_gpus: int
    memory_gib: float
    networks: list[str]
    phase_transitions: list[NodePhaseTransitionResponse]
    instance_id: str | None = None
    latest_remediation: RemediationResponse | None = None
    slurm_worker_hostname: str | None = None
    public_ipv4: str | None = None
    auto_remediation_enabled: bool | None = None
    marked_for_deletion: bool | None = None
    deleted_at: UtcDatetime | None = None
    ephemeral_storage: str | None = None
    ib_hca_count: int | None = None
    ib_hca_type: str | None = None
    nvswitch_count: int | None = None
    nvswitch_type: str | None = None


class NodeLifecycleEventResponse(WireResponse):
    """A scale-up, scale-down or preemption event of one node."""

    node_id: str
    reason: NodeLifecycleReason
    message: str
    timestamp: UtcDatetime

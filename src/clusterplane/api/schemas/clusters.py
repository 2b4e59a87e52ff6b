"""Wire models of the cluster endpoints (spec §2.1-§2.5, §3.1).

Owns `CreateClusterRequest` (the union of 3.1.1's two create variants plus the 2.x-only
fields), `UpdateClusterRequest` (partial: absent or `null` means unchanged), and the
`Cluster` response family. Field-level rules (multiples of 8, ranges, strict JSON types)
and cross-field rules that need no database (billing windows, the legacy version pair,
GPU components within `num_gpus`, ...) are enforced here; anything that needs the
catalog, the fleet or the stored cluster (version selector present and known, region,
GPU type offered, current billing type) is the service's job.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StrictInt, model_validator

from clusterplane.api.schemas.cluster_parts import (
    AcceptanceTestsParams,
    AddOnCreate,
    AddOnResponse,
    AddOnUpdate,
    ClusterConfigRequest,
    ClusterConfigResponse,
    ControlPlaneNodeResponse,
    GPUWorkerNodeResponse,
    NodeLifecycleEventResponse,
    OidcConfigRequest,
    OidcConfigResponse,
    PhaseTransitionResponse,
)
from clusterplane.api.schemas.common import (
    GpuCount,
    Identifier,
    ImageRef,
    NodeGpuCount,
    ResourceName,
    UtcDatetime,
    Version,
    WireDatetime,
    WireRequest,
    WireResponse,
    field_error,
)
from clusterplane.api.schemas.storage import SharedVolumeCreate, VolumeRef
from clusterplane.domain.enums import BillingType, ClusterStatus, ClusterType, GpuType

__all__ = [
    "ClusterDeleteResponse",
    "ClusterListResponse",
    "ClusterResponse",
    "CreateClusterRequest",
    "UpdateClusterRequest",
]

DurationDays = Annotated[StrictInt, Field(ge=1, le=90)]
ShmSizeGib = Annotated[StrictInt, Field(ge=1, le=4096)]


def _check_gpu_components(num_gpus: int | None, reserved: int | None, pool: int | None) -> None:
    """Reserved and capacity-pool GPUs are parts of `num_gpus` (when it is known)."""
    if num_gpus is None:
        return
    if reserved is not None and reserved > num_gpus:
        raise field_error("num_reserved_gpus", "must not exceed num_gpus")
    if pool is not None and pool > num_gpus:
        raise field_error("num_capacity_pool_gpus", "must not exceed num_gpus")
    if reserved is not None and pool is not None and reserved + pool > num_gpus:
        raise field_error(
            "num_capacity_pool_gpus",
            "must not exceed num_gpus together with num_reserved_gpus",
        )


def _check_unique_add_on_names(names: list[str]) -> None:
    if len(set(names)) != len(names):
        raise field_error("add_ons", "must not name the same add-on twice")


class CreateClusterRequest(WireRequest):
    """Body of `POST /v1/compute/clusters`: either 3.1.1 variant, or a 2.x body.

    Only the fields both variants require are required here. Whether a version selector
    (`nvidia_version_id`, or the `cuda_version` + `nvidia_driver_version` pair) is present
    and resolves in the catalog is checked by the service; a half pair is rejected here.
    """

    billing_type: BillingType
    cluster_name: ResourceName
    gpu_type: GpuType
    num_gpus: NodeGpuCount
    region: Identifier
    nvidia_version_id: Identifier | None = None
    cuda_version: Version | None = None
    nvidia_driver_version: Version | None = None
    cluster_type: ClusterType | None = None
    duration_days: DurationDays | None = None
    num_reserved_gpus: GpuCount | None = None
    capacity_pool_id: Identifier | None = None
    num_capacity_pool_gpus: GpuCount | None = None
    num_preemptible_gpus: GpuCount | None = None
    auto_scale: StrictBool | None = None
    auto_scale_max_gpus: GpuCount | None = None
    reservation_start_time: WireDatetime | None = None
    reservation_end_time: WireDatetime | None = None
    volume_id: Identifier | None = None
    shared_volume: SharedVolumeCreate | None = None
    slurm_shm_size_gib: ShmSizeGib | None = None
    slurm_image: ImageRef | None = None
    install_traefik: StrictBool | None = None
    project_id: Identifier | None = None
    add_ons: Annotated[list[AddOnCreate], Field(max_length=32)] | None = None
    cluster_config: ClusterConfigRequest | None = None
    oidc_config: OidcConfigRequest | None = None
    acceptance_tests_params: AcceptanceTestsParams | None = None
    # Accepted from 2.x clients and kept; `auto_scaled` is the old name of `auto_scale`.
    auto_scaled: StrictBool | None = None
    gpu_node_failover_enabled: StrictBool | None = None
    driver_version: Version | None = None

    @property
    def wants_auto_scale(self) -> bool:
        """`auto_scale`, or the 2.x alias `auto_scaled`."""
        return bool(self.auto_scale or self.auto_scaled)

    @model_validator(mode="after")
    def check_version_pair(self) -> CreateClusterRequest:
        if self.cuda_version is not None and self.nvidia_driver_version is None:
            raise field_error(
                "nvidia_driver_version", "is required when cuda_version is set (they pair)"
            )
        if self.nvidia_driver_version is not None and self.cuda_version is None:
            raise field_error(
                "cuda_version", "is required when nvidia_driver_version is set (they pair)"
            )
        return self

    @model_validator(mode="after")
    def check_billing(self) -> CreateClusterRequest:
        start, end = self.reservation_start_time, self.reservation_end_time
        if self.billing_type is BillingType.SCHEDULED_CAPACITY:
            if start is None:
                raise field_error(
                    "reservation_start_time", "is required for SCHEDULED_CAPACITY billing"
                )
            if end is None:
                raise field_error(
                    "reservation_end_time", "is required for SCHEDULED_CAPACITY billing"
                )
        if start is not None and end is not None and end <= start:
            raise field_error("reservation_end_time", "must be later than reservation_start_time")
        if self.duration_days is not None and self.billing_type is not BillingType.RESERVED:
            raise field_error("duration_days", "is only accepted for RESERVED billing")
        if self.billing_type is BillingType.RESERVED and self.duration_days is None and end is None:
            raise field_error(
                "duration_days",
                "is required for RESERVED billing (or give reservation_end_time)",
            )
        return self

    @model_validator(mode="after")
    def check_capacity(self) -> CreateClusterRequest:
        _check_gpu_components(self.num_gpus, self.num_reserved_gpus, self.num_capacity_pool_gpus)
        if self.num_capacity_pool_gpus and self.capacity_pool_id is None:
            raise field_error("capacity_pool_id", "is required when num_capacity_pool_gpus is set")
        if self.wants_auto_scale:
            if self.auto_scale_max_gpus is None:
                raise field_error("auto_scale_max_gpus", "is required when auto_scale is true")
            if self.auto_scale_max_gpus < self.num_gpus:
                raise field_error("auto_scale_max_gpus", "must be at least num_gpus")
        return self

    @model_validator(mode="after")
    def check_shape(self) -> CreateClusterRequest:
        if self.volume_id is not None and self.shared_volume is not None:
            raise field_error("shared_volume", "cannot be combined with volume_id")
        if self.cluster_type is ClusterType.SLURM and self.slurm_shm_size_gib is None:
            raise field_error("slurm_shm_size_gib", "is required when cluster_type is SLURM")
        if self.add_ons:
            _check_unique_add_on_names([add_on.name for add_on in self.add_ons])
        return self


class UpdateClusterRequest(WireRequest):
    """Body of `PUT /v1/compute/clusters/{id}`: a partial update.

    A field that is absent or `null` keeps its value; use `model_fields_set` to see what
    was sent. Whether a field fits the stored cluster (billing type, pool) is the
    service's check.
    """

    num_gpus: NodeGpuCount | None = None
    cluster_type: ClusterType | None = None
    num_reserved_gpus: GpuCount | None = None
    num_capacity_pool_gpus: GpuCount | None = None
    num_preemptible_gpus: GpuCount | None = None
    reservation_end_time: WireDatetime | None = None
    add_ons: Annotated[list[AddOnUpdate], Field(max_length=32)] | None = None
    cluster_config: ClusterConfigRequest | None = None

    @model_validator(mode="after")
    def check_components(self) -> UpdateClusterRequest:
        _check_gpu_components(self.num_gpus, self.num_reserved_gpus, self.num_capacity_pool_gpus)
        if self.add_ons:
            _check_unique_add_on_names([add_on.name for add_on in self.add_ons])
        return self


class ClusterResponse(WireResponse):
    """`Cluster`: every field `together` 3.1.1 declares, required ones non-optional."""

    cluster_id: str
    cluster_name: str
    cluster_type: ClusterType
    region: str
    gpu_type: GpuType
    billing_type: BillingType
    status: ClusterStatus
    num_gpus: int
    num_reserved_gpus: int
    num_capacity_pool_gpus: int
    desired_preemptible_gpus: int
    allocated_preemptible_gpus: int
    num_cpu_workers: int
    cuda_version: str
    nvidia_driver_version: str
    kube_config: str
    project_id: str
    volumes: list[VolumeRef]
    control_plane_nodes: list[ControlPlaneNodeResponse]
    gpu_worker_nodes: list[GPUWorkerNodeResponse]
    phase_transitions: list[PhaseTransitionResponse]
    add_ons: list[AddOnResponse]
    capacity_pool_id: str | None = None
    cluster_config: ClusterConfigResponse | None = None
    oidc_config: OidcConfigResponse | None = None
    control_plane_ready: bool | None = None
    created_at: UtcDatetime | None = None
    first_ready_at: UtcDatetime | None = None
    duration_hours: int | None = None
    reservation_start_time: UtcDatetime | None = None
    reservation_end_time: UtcDatetime | None = None
    install_traefik: bool | None = None
    slurm_shm_size_gib: int | None = None
    deleted_gpu_worker_nodes: list[GPUWorkerNodeResponse] | None = None
    node_lifecycle_events: list[NodeLifecycleEventResponse] | None = None
    nvidia_driver_version_id: str | None = None
    os_image: str | None = None
    machine_cluster_id: str | None = None
    is_in_substrate: bool | None = None
    ums_org_id: str | None = None
    ums_project_id: str | None = None


class ClusterListResponse(WireResponse):
    clusters: list[ClusterResponse]


class ClusterDeleteResponse(WireResponse):
    cluster_id: str

"""Wire models of shared volumes (spec §2.7, §3.2 `Volume`, §3.7, §3.8 `SharedVolumeCreate`).

Owns the storage request bodies (create, resize), the inline `shared_volume` object of a
cluster create, the `ClusterStorage` response family, and `VolumeRef`, the short volume
entry inside a Cluster. Field names and required-ness match `together` 3.1.1
(`types/clusters/cluster_storage.py`, `storage_*_params.py`, `types/cluster.py::Volume`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StrictInt

from clusterplane.api.schemas.common import (
    Identifier,
    ResourceName,
    WireRequest,
    WireResponse,
)
from clusterplane.domain.enums import VolumeStatus

__all__ = [
    "MAX_VOLUME_TIB",
    "ClusterStorageResponse",
    "CreateVolumeRequest",
    "SharedVolumeCreate",
    "StorageDeleteResponse",
    "StorageListResponse",
    "UpdateVolumeRequest",
    "VolumeRef",
    "VolumeSizeTib",
]

MAX_VOLUME_TIB = 10_000

VolumeSizeTib = Annotated[StrictInt, Field(ge=1, le=MAX_VOLUME_TIB)]
"""Whole TiB, 1..10 000."""


class SharedVolumeCreate(WireRequest):
    """`shared_volume` in a cluster create: a new volume made together with the cluster."""

    volume_name: ResourceName
    size_tib: VolumeSizeTib
    region: Identifier
    instance_cluster_id: Identifier | None = None
    is_lifecycle_independent: StrictBool | None = None
    project_id: Identifier | None = None


class CreateVolumeRequest(WireRequest):
    """Body of `POST /v1/compute/clusters/storage/volumes`."""

    volume_name: ResourceName
    size_tib: VolumeSizeTib
    region: Identifier
    instance_cluster_id: Identifier | None = None
    is_lifecycle_independent: StrictBool | None = None
    project_id: Identifier | None = None


class UpdateVolumeRequest(WireRequest):
    """Body of `PUT /v1/compute/clusters/storage/volumes` (PUT on the collection).

    Without `size_tib` the call is a no-op that returns the volume.
    """

    volume_id: Identifier
    size_tib: VolumeSizeTib | None = None


class ClusterStorageResponse(WireResponse):
    """`ClusterStorage`: a volume as the storage endpoints return it."""

    volume_id: str
    volume_name: str
    size_tib: int
    status: VolumeStatus


class VolumeRef(WireResponse):
    """`Volume`: a volume attached to a cluster, as listed in `Cluster.volumes`."""

    volume_id: str
    volume_name: str
    size_tib: int
    status: VolumeStatus


class StorageListResponse(WireResponse):
    volumes: list[ClusterStorageResponse]


class StorageDeleteResponse(WireResponse):
    success: bool

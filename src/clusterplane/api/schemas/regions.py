"""Wire models of the region catalog, `GET /v1/compute/regions` (spec §2.6, §3.7).

Owns `RegionListResponse {regions}` and its parts. Every key is required; a driver
version's `id` is what clients send back as `nvidia_version_id`. Matches `together` 3.1.1
`types/cluster_list_regions_response.py`.
"""

from __future__ import annotations

from clusterplane.api.schemas.common import WireResponse

__all__ = ["DriverVersionResponse", "RegionListResponse", "RegionResponse"]


class DriverVersionResponse(WireResponse):
    """One NVIDIA software combination offered in a region (`RegionDriverVersion`)."""

    id: str
    cuda_version: str
    nvidia_driver_version: str
    os: str


class RegionResponse(WireResponse):
    """`Region`; `supported_instance_types` holds `gpu_type` values as strings."""

    name: str
    supported_instance_types: list[str]
    driver_versions: list[DriverVersionResponse]


class RegionListResponse(WireResponse):
    regions: list[RegionResponse]

"""Resolving what a create asks for against a region's catalogue: region, GPU type, drivers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from clusterplane.db.rows import RegionRow
from clusterplane.errors import InvalidRequest
from clusterplane.services.capacity.fleet import (
    list_regions,
    offers_instance_type,
    supported_instance_types,
)

DEFAULT_OS = "ubuntu-22.04"


@dataclass(frozen=True)
class DriverChoice:
    id: str
    cuda_version: str
    nvidia_driver_version: str
    os: str


def get_region(session: Session, name: str) -> RegionRow:
    row = session.get(RegionRow, name)
    if row is None:
        known = ", ".join(r.name for r in list_regions(session))
        raise InvalidRequest(f"unknown region '{name}'; available regions: {known}", param="region")
    return row


def check_gpu_type(session: Session, region: str, gpu_type: str) -> None:
    if not offers_instance_type(session, region, gpu_type):
        offered = supported_instance_types(session, region)
        raise InvalidRequest(
            f"gpu_type {gpu_type} is not offered in {region}; offered: {', '.join(offered)}",
            param="gpu_type",
        )


def _split_legacy_cuda(cuda_version: str) -> tuple[str, str | None]:
    """'12.8' -> ('12.8', None); '12.8-ubuntu-24.04' or '12.8_ubuntu24.04' -> with an OS."""
    for sep in ("-", "_"):
        if sep in cuda_version:
            version, os_text = cuda_version.split(sep, 1)
            os_text = os_text.replace("ubuntu", "ubuntu-").replace("--", "-")
            return version, os_text
    return cuda_version, None


def resolve_driver(
    region: RegionRow,
    *,
    nvidia_version_id: str | None,
    cuda_version: str | None,
    nvidia_driver_version: str | None,
) -> DriverChoice:
    entries = [DriverChoice(**{k: str(v) for k, v in e.items()}) for e in region.driver_versions]
    if not entries:
        raise InvalidRequest(f"region {region.name} has no driver versions", param="region")
    by_id = {e.id: e for e in entries}
    chosen: DriverChoice | None = None
    if nvidia_version_id is not None:
        chosen = by_id.get(nvidia_version_id)
        if chosen is None:
            raise InvalidRequest(
                f"unknown nvidia_version_id '{nvidia_version_id}' in {region.name}; "
                f"available: {', '.join(by_id)}",
                param="nvidia_version_id",
            )
    if cuda_version is not None and nvidia_driver_version is not None:
        legacy = _match_legacy(entries, region.name, cuda_version, nvidia_driver_version)
        if chosen is not None and legacy.id != chosen.id:
            raise InvalidRequest(
                "nvidia_version_id, cuda_version and nvidia_driver_version name different "
                "catalogue entries",
                param="nvidia_version_id",
            )
        chosen = legacy
    if chosen is None:
        # 2.x clients may send no selector at all: the newest entry of the region.
        chosen = max(entries, key=lambda e: _version_key(e.cuda_version))
    return chosen


def _match_legacy(
    entries: list[DriverChoice], region: str, cuda_version: str, driver: str
) -> DriverChoice:
    version, os_name = _split_legacy_cuda(cuda_version)
    matches = [
        e for e in entries if e.cuda_version == version and e.nvidia_driver_version == driver
    ]
    if os_name is not None:
        matches = [e for e in matches if e.os == os_name]
    elif any(e.os == DEFAULT_OS for e in matches):
        matches = [e for e in matches if e.os == DEFAULT_OS]
    if not matches:
        pairs = sorted({f"{e.cuda_version}/{e.nvidia_driver_version}" for e in entries})
        raise InvalidRequest(
            f"no driver version with CUDA {cuda_version} and driver {driver} in {region}; "
            f"available CUDA/driver pairs: {', '.join(pairs)}",
            param="cuda_version",
        )
    return matches[0]


def _version_key(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split("."):
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


def region_driver_versions(region: RegionRow) -> list[dict[str, Any]]:
    return list(region.driver_versions)

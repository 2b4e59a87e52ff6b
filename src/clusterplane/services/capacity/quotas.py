"""Per-project quotas: the operator's limits, and the checks on everything tenants share.

Three limits, each a column of the project's quota row:

- `max_gpus`: standard GPUs of the project's live clusters (not deleted, no delete
  requested). None, or no row: unlimited.
- `max_preemptible_gpus`: the preemptible targets (`desired_preemptible_gpus`) of its live
  clusters, over every region. None: in each region and GPU type, at most
  `CapacitySettings.default_preemptible_share` of that region's GPUs of that type.
- `max_storage_tib`: its live shared volumes (deleting ones too, their space is not free
  yet), over every region. None: in each region, at most
  `CapacitySettings.default_storage_share` of the region's storage.

A refusal is `QuotaExceeded` (403) naming the limit, the use and what remains. Checks lock
the project's quota row (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's writers already
queue); where a default share applies, the caller holds the region's row lock, so
concurrent requests of one project cannot both slip under a limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.orm import Session

from clusterplane.db.prepared import Prepared, reader_of
from clusterplane.db.rows import (
    ClusterRow,
    HostRow,
    NodeRow,
    ProjectQuotaRow,
    ProjectRow,
    RegionRow,
    VolumeRow,
)
from clusterplane.domain.enums import NodeRole
from clusterplane.errors import InvalidRequest, NotFound, QuotaExceeded
from clusterplane.settings import CapacitySettings

MAX_QUOTA_GPUS = 10_000_000
MAX_QUOTA_TIB = 10_000_000
LIMITS = ("max_gpus", "max_preemptible_gpus", "max_storage_tib")
DEFAULT_CAPACITY = CapacitySettings()


@dataclass(frozen=True)
class QuotaView:
    project_id: str
    max_gpus: int | None  # None: no limit
    used_gpus: int
    max_preemptible_gpus: int | None  # None: the default share of each region
    used_preemptible_gpus: int  # the targets of its live clusters
    allocated_preemptible_gpus: int  # what preemptible nodes hold now
    max_storage_tib: int | None  # None: the default share of each region
    used_storage_tib: int
    default_preemptible_share: float
    default_storage_share: float

    def as_dict(self) -> dict[str, object]:
        return {
            "project_id": self.project_id,
            "max_gpus": self.max_gpus,
            "used_gpus": self.used_gpus,
            "remaining_gpus": None if self.max_gpus is None else self.max_gpus - self.used_gpus,
            "max_preemptible_gpus": self.max_preemptible_gpus,
            "used_preemptible_gpus": self.used_preemptible_gpus,
            "allocated_preemptible_gpus": self.allocated_preemptible_gpus,
            "max_storage_tib": self.max_storage_tib,
            "used_storage_tib": self.used_storage_tib,
            "default_preemptible_share": self.default_preemptible_share,
            "default_storage_share": self.default_storage_share,
        }


def _live_clusters(project_id: str) -> tuple[ColumnElement[bool], ...]:
    return (
        ClusterRow.project_id == project_id,
        ClusterRow.deleted_at.is_(None),
        ClusterRow.delete_requested_at.is_(None),
    )


def used_gpus(session: Session, project_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(ClusterRow.num_gpus), 0)).where(*_live_clusters(project_id))
    )
    return int(total or 0)


def preemptible_targets(
    session: Session, project_id: str, *where: ColumnElement[bool], skip: str | None = None
) -> int:
    """The preemptible targets of the project's live clusters (except `skip`'s)."""
    total = session.scalar(
        select(func.coalesce(func.sum(ClusterRow.desired_preemptible_gpus), 0)).where(
            *_live_clusters(project_id), ClusterRow.id != (skip or ""), *where
        )
    )
    return int(total or 0)


def allocated_preemptible(session: Session, project_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(NodeRow.num_gpus), 0))
        .join(ClusterRow, ClusterRow.id == NodeRow.cluster_id)
        .where(
            ClusterRow.project_id == project_id,
            NodeRow.role == NodeRole.GPU_WORKER,
            NodeRow.preemptible.is_(True),
            NodeRow.deleted_at.is_(None),
        )
    )
    return int(total or 0)


def used_storage(session: Session, project_id: str, *where: ColumnElement[bool]) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(VolumeRow.size_tib), 0)).where(
            VolumeRow.project_id == project_id, VolumeRow.deleted_at.is_(None), *where
        )
    )
    return int(total or 0)


class _Limits(NamedTuple):
    max_gpus: int | None
    max_preemptible_gpus: int | None
    max_storage_tib: int | None


_LIMITS: Prepared[_Limits] = Prepared(
    select(*(getattr(ProjectQuotaRow, name) for name in _Limits._fields))
    .where(ProjectQuotaRow.project_id == bindparam("project_id"))
    .with_for_update(),
    _Limits,
)


def _locked_row(session: Session, project_id: str) -> _Limits | None:
    """The project's explicit limits (None: it has none), its quota row locked for the
    rest of the transaction (PostgreSQL), so checks of one project run one at a time."""
    found = reader_of(session).all(_LIMITS, project_id=project_id)
    return found[0] if found else None


def check(session: Session, project_id: str, additional_gpus: int) -> None:
    """Raise `QuotaExceeded` if `additional_gpus` more would take the project over its quota."""
    if additional_gpus <= 0:
        return
    row = _locked_row(session, project_id)
    limit = row.max_gpus if row is not None else None
    if limit is None:
        return
    used = used_gpus(session, project_id)
    if used + additional_gpus > limit:
        raise QuotaExceeded(
            f"project {project_id} has a quota of {limit} GPUs and uses {used}; "
            f"{additional_gpus} more would exceed it ({max(0, limit - used)} remaining)",
            param="num_gpus",
        )


def region_gpus(session: Session, region: str, gpu_type: str) -> int:
    """The GPUs of every host of a region and GPU type in the fleet file."""
    total = session.scalar(
        select(func.coalesce(func.sum(HostRow.num_gpus), 0)).where(
            HostRow.region == region, HostRow.gpu_type == gpu_type, HostRow.in_fleet_file.is_(True)
        )
    )
    return int(total or 0)


def check_preemptible(
    session: Session,
    project: str,
    where: tuple[str, str],
    target: int,
    *,
    cluster_id: str | None = None,
    previous: int = 0,
    settings: CapacitySettings = DEFAULT_CAPACITY,
) -> None:
    """Raise `QuotaExceeded` unless a cluster of `project` in `where` (region, GPU type)
    may have a preemptible target of `target` GPUs (it had `previous`) beside the targets
    of the project's other live clusters. Lowering a target is always allowed."""
    if target <= previous:
        return
    region, gpu_type = where
    row = _locked_row(session, project)
    explicit = row.max_preemptible_gpus if row is not None else None
    scope_filter: tuple[ColumnElement[bool], ...] = ()
    if explicit is not None:
        limit, scope = explicit, "over all regions"
    else:
        share = settings.default_preemptible_share
        limit = math.floor(share * region_gpus(session, region, gpu_type))
        scope_filter = (ClusterRow.region == region, ClusterRow.gpu_type == gpu_type)
        scope = f"of {gpu_type} in {region} ({share:.0%} of the region's GPUs, the default)"
    used = preemptible_targets(session, project, *scope_filter, skip=cluster_id)
    if used + target > limit:
        raise QuotaExceeded(
            f"project {project} may ask for {limit} preemptible GPUs {scope} and its other "
            f"clusters ask for {used}; {target} would exceed it "
            f"({max(0, limit - used)} remaining)",
            param="num_preemptible_gpus",
        )


def check_storage(
    session: Session,
    project_id: str,
    region: RegionRow,
    additional_tib: int,
    param: str,
    settings: CapacitySettings = DEFAULT_CAPACITY,
) -> None:
    """Raise `QuotaExceeded` if `additional_tib` more shared storage in `region` would take
    the project over its storage quota."""
    if additional_tib <= 0:
        return
    row = _locked_row(session, project_id)
    explicit = row.max_storage_tib if row is not None else None
    if explicit is not None:
        limit, used = explicit, used_storage(session, project_id)
        scope = "over all regions"
    else:
        share = settings.default_storage_share
        limit = math.floor(share * region.storage_capacity_tib)
        used = used_storage(session, project_id, VolumeRow.region == region.name)
        scope = (
            f"in {region.name} ({share:.0%} of its {region.storage_capacity_tib} TiB, the default)"
        )
    if used + additional_tib > limit:
        raise QuotaExceeded(
            f"project {project_id} may hold {limit} TiB of shared storage {scope} and holds "
            f"{used}; {additional_tib} TiB more would exceed it "
            f"({max(0, limit - used)} TiB remaining)",
            param=param,
        )


def _project(session: Session, project_id: str) -> ProjectRow:
    row = session.get(ProjectRow, project_id)
    if row is None:
        raise NotFound(f"no project {project_id}", param="project_id")
    return row


def _view(
    session: Session, project_id: str, row: ProjectQuotaRow | None, settings: CapacitySettings
) -> QuotaView:
    return QuotaView(
        project_id=project_id,
        max_gpus=row.max_gpus if row is not None else None,
        used_gpus=used_gpus(session, project_id),
        max_preemptible_gpus=row.max_preemptible_gpus if row is not None else None,
        used_preemptible_gpus=preemptible_targets(session, project_id),
        allocated_preemptible_gpus=allocated_preemptible(session, project_id),
        max_storage_tib=row.max_storage_tib if row is not None else None,
        used_storage_tib=used_storage(session, project_id),
        default_preemptible_share=settings.default_preemptible_share,
        default_storage_share=settings.default_storage_share,
    )


def get_quota(
    session: Session, project_id: str, settings: CapacitySettings = DEFAULT_CAPACITY
) -> QuotaView:
    _project(session, project_id)
    return _view(session, project_id, session.get(ProjectQuotaRow, project_id), settings)


def _check_limit(name: str, value: int | None) -> None:
    top = MAX_QUOTA_TIB if name == "max_storage_tib" else MAX_QUOTA_GPUS
    if value is not None and not 0 <= value <= top:
        raise InvalidRequest(f"{name} must be between 0 and {top}, got {value}", param=name)


def set_quota(
    session: Session,
    project_id: str,
    limits: dict[str, int | None],
    *,
    now: datetime,
    settings: CapacitySettings = DEFAULT_CAPACITY,
) -> QuotaView:
    """Set the limits named in `limits` (None clears one; the others stay). A limit below
    what the project already uses only stops further growth."""
    _project(session, project_id)
    if not limits or set(limits) - set(LIMITS):
        raise InvalidRequest(f"give at least one of {', '.join(LIMITS)}", param="max_gpus")
    for name, value in limits.items():
        _check_limit(name, value)
    row = session.get(ProjectQuotaRow, project_id)
    if row is None:
        row = ProjectQuotaRow(project_id=project_id, updated_at=now)
        session.add(row)
    for name, value in limits.items():
        setattr(row, name, value)
    row.updated_at = now
    if all(getattr(row, name) is None for name in LIMITS):
        session.delete(row)
    session.flush()
    return get_quota(session, project_id, settings)


def remove_quota(
    session: Session, project_id: str, settings: CapacitySettings = DEFAULT_CAPACITY
) -> QuotaView:
    """Drop every limit the operator set for the project (idempotent)."""
    _project(session, project_id)
    row = session.get(ProjectQuotaRow, project_id)
    if row is not None:
        session.delete(row)
        session.flush()
    return get_quota(session, project_id, settings)


def list_quotas(session: Session, settings: CapacitySettings = DEFAULT_CAPACITY) -> list[QuotaView]:
    rows = session.scalars(select(ProjectQuotaRow).order_by(ProjectQuotaRow.project_id))
    return [_view(session, r.project_id, r, settings) for r in rows]

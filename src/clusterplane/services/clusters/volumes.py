"""Shared volume use cases: create, list, resize (grow only), delete, attach and detach.

Status is driven by the volume controller through the storage driver: `provisioning` until
the driver says the volume exists, then `available`, or `bound` while attached to a
cluster; `deleting` until the driver has removed it, after which it is gone from lists.

Limits: each volume's size is within the operator's `StorageSettings` (min..max TiB); a
project's volumes stay within its storage quota (`services/capacity/quotas.py`: by default a share
of the region), past which a create or a grow is refused with `QuotaExceeded` (403); and
the live volumes of a region (everything not yet gone, deleting ones included, since their
space is not free yet) fit in the region's `storage_capacity_tib`; past it a create or a
grow is refused with `CapacityUnavailable` (409, not retried) saying how much is free.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, RegionRow, VolumeRow
from clusterplane.domain.enums import VolumeStatus
from clusterplane.errors import (
    CapacityUnavailable,
    Conflict,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
)
from clusterplane.services.access.auth import Caller, resolve_project
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.capacity import quotas
from clusterplane.services.capacity.calendar import lock_region
from clusterplane.services.capacity.catalog import get_region
from clusterplane.services.events.events import record_event, volume_scope
from clusterplane.settings import CapacitySettings, StorageSettings

DEFAULT_LIMITS = StorageSettings()
DEFAULT_CAPACITY = CapacitySettings()


def check_size(size_tib: int, limits: StorageSettings, param: str = "size_tib") -> None:
    if not limits.min_volume_tib <= size_tib <= limits.max_volume_tib:
        raise InvalidRequest(
            f"volumes on this server are {limits.min_volume_tib} to "
            f"{limits.max_volume_tib} TiB; {size_tib} TiB is outside that",
            param=param,
        )


def used_tib(session: Session, region: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(VolumeRow.size_tib), 0)).where(
            VolumeRow.region == region, VolumeRow.deleted_at.is_(None)
        )
    )
    return int(total or 0)


def check_room(
    session: Session,
    project_id: str,
    region: RegionRow,
    extra_tib: int,
    param: str,
    capacity: CapacitySettings = DEFAULT_CAPACITY,
) -> None:
    """Refuse `extra_tib` more for `project_id` in `region` when that would take the
    project over its storage quota (403) or overflow the region's shared storage (409).

    Checks of one region queue on its row (PostgreSQL), so two concurrent creates cannot
    both see the same free space."""
    lock_region(session, region.name)
    free = region.storage_capacity_tib - used_tib(session, region.name)
    if extra_tib > free:
        raise CapacityUnavailable(
            f"region {region.name} has {max(free, 0)} TiB of shared storage free "
            f"(of {region.storage_capacity_tib} TiB); {extra_tib} TiB more does not fit",
            param=param,
        )
    quotas.check_storage(session, project_id, region, extra_tib, param, capacity)


def find_volume(session: Session, caller: Caller, volume_id: str) -> VolumeRow | None:
    row = session.get(VolumeRow, volume_id)
    if row is None or row.deleted_at is not None or not caller.can_see(row.project_id):
        return None
    return row


def get_volume(session: Session, caller: Caller, volume_id: str) -> VolumeRow:
    row = find_volume(session, caller, volume_id)
    if row is None:
        raise NotFound(f"volume '{volume_id}' not found", param="volume_id")
    return row


def list_volumes(session: Session, caller: Caller, project_id: str | None) -> list[VolumeRow]:
    scope = caller.project_id if project_id is None else project_id
    if not caller.can_see(scope):
        return []
    return list(
        session.scalars(
            select(VolumeRow)
            .where(VolumeRow.project_id == scope, VolumeRow.deleted_at.is_(None))
            .order_by(VolumeRow.created_at, VolumeRow.id)
        )
    )


def create_volume(
    session: Session,
    caller: Caller,
    *,
    volume_name: str,
    size_tib: int,
    region: str,
    now: datetime,
    project_id: str | None = None,
    is_lifecycle_independent: bool = True,
    instance_cluster_id: str | None = None,
    limits: StorageSettings = DEFAULT_LIMITS,
    size_param: str = "size_tib",
    capacity: CapacitySettings = DEFAULT_CAPACITY,
) -> VolumeRow:
    project = resolve_project(caller, project_id)
    region_row = get_region(session, region)
    check_size(size_tib, limits, size_param)
    if instance_cluster_id is not None:
        cluster = session.get(ClusterRow, instance_cluster_id)
        if (
            cluster is None
            or cluster.deleted_at is not None
            or not caller.can_see(cluster.project_id)
        ):
            raise NotFound(
                f"cluster '{instance_cluster_id}' not found", param="instance_cluster_id"
            )
        if cluster.region != region_row.name:
            raise InvalidRequest("instance_cluster_id is in another region", param="region")
    check_room(session, project, region_row, size_tib, size_param, capacity)
    row = VolumeRow(
        id=new_uuid(),
        project_id=project,
        name=volume_name,
        region=region_row.name,
        size_tib=size_tib,
        provisioned_size_tib=0,
        status=VolumeStatus.PROVISIONING,
        is_lifecycle_independent=is_lifecycle_independent,
        cluster_id=None,
        provider_state=None,
        created_at=now,
        updated_at=now,
        delete_requested_at=None,
        deleted_at=None,
        next_reconcile_at=now,
    )
    session.add(row)
    record_event(
        session,
        object_type="volume",
        object_id=row.id,
        kind="created",
        message=f"{size_tib} TiB in {region_row.name}",
        at=now,
        scope=volume_scope(row),
    )
    return row


def resize_volume(
    session: Session,
    caller: Caller,
    volume_id: str,
    size_tib: int | None,
    *,
    now: datetime,
    limits: StorageSettings = DEFAULT_LIMITS,
    capacity: CapacitySettings = DEFAULT_CAPACITY,
) -> VolumeRow:
    row = get_volume(session, caller, volume_id)
    if size_tib is None or size_tib == row.size_tib:
        return row
    if row.status == VolumeStatus.DELETING:
        raise FailedPrecondition("the volume is being deleted", param="volume_id")
    if size_tib < row.size_tib:
        raise InvalidRequest(
            f"volumes can only grow: {row.size_tib} TiB -> {size_tib} TiB is a shrink",
            param="size_tib",
        )
    check_size(size_tib, limits)
    region = get_region(session, row.region)
    check_room(session, row.project_id, region, size_tib - row.size_tib, "size_tib", capacity)
    record_event(
        session,
        object_type="volume",
        object_id=row.id,
        kind="resized",
        message=f"{row.size_tib} -> {size_tib} TiB",
        at=now,
        scope=volume_scope(row),
    )
    row.size_tib = size_tib
    row.updated_at = now
    row.next_reconcile_at = now
    return row


def delete_volume(session: Session, caller: Caller, volume_id: str, *, now: datetime) -> None:
    """Start deletion; repeating it succeeds, also once the volume is gone."""
    gone = session.get(VolumeRow, volume_id)
    if gone is not None and gone.deleted_at is not None and caller.can_see(gone.project_id):
        return
    row = get_volume(session, caller, volume_id)
    if row.cluster_id is not None:
        raise Conflict(
            f"volume '{volume_id}' is attached to cluster '{row.cluster_id}'; "
            "delete the cluster or detach it first",
            param="volume_id",
        )
    request_deletion(session, row, now)


def request_deletion(session: Session, row: VolumeRow, now: datetime) -> None:
    if row.delete_requested_at is None:
        row.delete_requested_at = now
        row.status = VolumeStatus.DELETING
        row.updated_at = now
        row.next_reconcile_at = now
        record_event(
            session,
            object_type="volume",
            object_id=row.id,
            kind="status",
            message="deleting",
            at=now,
            scope=volume_scope(row),
        )


def attach_existing(
    session: Session, caller: Caller, cluster: ClusterRow, volume_id: str, *, now: datetime
) -> VolumeRow:
    row = find_volume(session, caller, volume_id)
    if row is None or row.project_id != cluster.project_id:
        raise InvalidRequest(
            f"volume '{volume_id}' not found in the cluster's project", param="volume_id"
        )
    if row.region != cluster.region:
        raise InvalidRequest(
            f"volume '{volume_id}' is in {row.region}, the cluster in {cluster.region}",
            param="volume_id",
        )
    if row.cluster_id is not None:
        raise InvalidRequest(
            f"volume '{volume_id}' is already attached to another cluster", param="volume_id"
        )
    if row.status in (VolumeStatus.DELETING, VolumeStatus.FAILED):
        raise InvalidRequest(f"volume '{volume_id}' is {row.status}", param="volume_id")
    row.cluster_id = cluster.id
    row.next_reconcile_at = now
    row.updated_at = now
    return row


def create_inline(
    session: Session,
    caller: Caller,
    cluster: ClusterRow,
    spec: dict[str, Any],
    *,
    now: datetime,
    limits: StorageSettings = DEFAULT_LIMITS,
    capacity: CapacitySettings = DEFAULT_CAPACITY,
) -> VolumeRow:
    if spec.get("region") not in (None, cluster.region):
        raise InvalidRequest(
            "shared_volume.region must be the cluster's region", param="shared_volume.region"
        )
    row = create_volume(
        session,
        caller,
        volume_name=str(spec["volume_name"]),
        size_tib=int(spec["size_tib"]),
        region=cluster.region,
        now=now,
        project_id=cluster.project_id,
        is_lifecycle_independent=bool(spec.get("is_lifecycle_independent") or False),
        limits=limits,
        size_param="shared_volume.size_tib",
        capacity=capacity,
    )
    row.cluster_id = cluster.id
    return row


def volumes_of(session: Session, cluster_ids: list[str]) -> list[VolumeRow]:
    if not cluster_ids:
        return []
    return list(
        session.scalars(
            select(VolumeRow)
            .where(VolumeRow.cluster_id.in_(cluster_ids), VolumeRow.deleted_at.is_(None))
            .order_by(VolumeRow.created_at)
        )
    )


def detach_all(session: Session, cluster_id: str, now: datetime) -> None:
    """On cluster deletion: detach, and delete the volumes that live with the cluster."""
    for row in volumes_of(session, [cluster_id]):
        row.cluster_id = None
        row.updated_at = now
        row.next_reconcile_at = now
        if not row.is_lifecycle_independent:
            request_deletion(session, row, now)

"""Capacity pools: hosts the operator holds for one project or organisation over a window.

Owns the pool use cases of the admin API (create, list, get, delete) and the rules a
cluster meets when it names a pool (`resolve_for_cluster`, `gpus_free_for`). Invariants:
a host is in at most one live pool; a pool takes only free general hosts, and only if
the general calendar stays honourable without them; while a pool lives (until its end)
its hosts serve only clusters of its owner that name it; a pool in use by a live
cluster cannot be deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clusterplane.db.rows import (
    CapacityPoolRow,
    ClusterRow,
    HostRow,
    OrganizationRow,
    ProjectRow,
)
from clusterplane.domain.calendar import peak
from clusterplane.domain.enums import HostState
from clusterplane.domain.placement import FreeHost, choose_hosts
from clusterplane.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.capacity import placement_cache
from clusterplane.services.capacity.calendar import (
    GPUS_PER_NODE,
    booking_of,
    check_general_calendar,
    load_calendar,
    lock_region,
    pool_is_live,
)
from clusterplane.services.capacity.catalog import check_gpu_type, get_region


@dataclass
class PoolCreate:
    name: str
    region: str
    gpu_type: str
    starts_at: datetime
    ends_at: datetime
    project_id: str | None = None
    organization_id: str | None = None
    host_names: list[str] | None = None
    num_hosts: int | None = None


def get_pool(session: Session, pool_id: str) -> CapacityPoolRow:
    pool = session.get(CapacityPoolRow, pool_id)
    if pool is None or pool.deleted_at is not None:
        raise NotFound(f"capacity pool '{pool_id}' not found", param="pool_id")
    return pool


def list_pools(session: Session) -> list[CapacityPoolRow]:
    return list(
        session.scalars(
            select(CapacityPoolRow)
            .where(CapacityPoolRow.deleted_at.is_(None))
            .order_by(CapacityPoolRow.created_at, CapacityPoolRow.id)
        )
    )


def pool_host_names(session: Session, pool_id: str) -> list[str]:
    return list(
        session.scalars(
            select(HostRow.name).where(HostRow.capacity_pool_id == pool_id).order_by(HostRow.name)
        )
    )


def _check_owner(session: Session, req: PoolCreate) -> None:
    if (req.project_id is None) == (req.organization_id is None):
        raise InvalidRequest(
            "give exactly one owner: project_id or organization_id", param="project_id"
        )
    if req.project_id is not None and session.get(ProjectRow, req.project_id) is None:
        raise NotFound(f"project '{req.project_id}' not found", param="project_id")
    if req.organization_id is not None:
        known = session.scalar(
            select(ProjectRow.id).where(ProjectRow.organization_id == req.organization_id)
        )
        if known is None and session.get(OrganizationRow, req.organization_id) is None:
            raise NotFound(
                f"organization '{req.organization_id}' not found", param="organization_id"
            )


def _pick_hosts(session: Session, req: PoolCreate, now: datetime) -> list[HostRow]:
    free = list(
        session.scalars(
            select(HostRow).where(
                HostRow.region == req.region,
                HostRow.gpu_type == req.gpu_type,
                HostRow.in_fleet_file.is_(True),
            )
        )
    )
    pools = {p.id: p for p in session.scalars(select(CapacityPoolRow))}
    takeable = {
        h.id: h
        for h in free
        if h.state == HostState.AVAILABLE
        and h.cluster_id is None
        and not (h.capacity_pool_id and pool_is_live(pools.get(h.capacity_pool_id), now))
    }
    if req.host_names is not None:
        by_name = {h.name: h for h in free}
        chosen = []
        for name in req.host_names:
            host = by_name.get(name)
            if host is None:
                raise InvalidRequest(
                    f"host '{name}' is not a {req.gpu_type} host of {req.region}",
                    param="host_names",
                )
            if host.id not in takeable:
                raise Conflict(
                    f"host '{name}' is not free (it is {host.state}"
                    f"{', in a cluster' if host.cluster_id else ''}"
                    f"{', in another pool' if host.capacity_pool_id else ''})",
                    param="host_names",
                )
            chosen.append(host)
        return chosen
    count = req.num_hosts or 0
    facts = [FreeHost(h.id, h.name, h.fabric, h.block, h.rack) for h in takeable.values()]
    ids = choose_hosts(facts, count, region=req.region, gpu_type=req.gpu_type)
    return [takeable[i] for i in ids]


def create_pool(session: Session, req: PoolCreate, *, now: datetime) -> CapacityPoolRow:
    """Take the hosts out of general capacity for the pool's owner (409 if they are busy
    or the general calendar would no longer fit)."""
    region = get_region(session, req.region)
    check_gpu_type(session, region.name, req.gpu_type)
    _check_owner(session, req)
    if req.ends_at <= max(now, req.starts_at):
        raise InvalidRequest("ends_at must be in the future and after starts_at", param="ends_at")
    if (req.host_names is None) == (req.num_hosts is None):
        raise InvalidRequest("give exactly one of host_names and num_hosts", param="host_names")
    lock_region(session, region.name)
    pool = CapacityPoolRow(
        id=f"pool-{new_uuid()[:12]}",
        name=req.name,
        region=region.name,
        gpu_type=req.gpu_type,
        project_id=req.project_id,
        organization_id=req.organization_id,
        starts_at=req.starts_at,
        ends_at=req.ends_at,
        created_at=now,
        deleted_at=None,
    )
    session.add(pool)
    hosts = _pick_hosts(session, req, now)
    if len({h.id for h in hosts}) != len(hosts):
        raise InvalidRequest("host_names lists a host twice", param="host_names")
    for host in hosts:
        host.capacity_pool_id = pool.id
        host.updated_at = now
    placement_cache.invalidate(session, (region.name, req.gpu_type))
    check_general_calendar(session, region.name, req.gpu_type, now)
    return pool


def delete_pool(session: Session, pool_id: str, *, now: datetime) -> str:
    pool = get_pool(session, pool_id)
    users = session.scalars(
        select(ClusterRow.id).where(
            ClusterRow.capacity_pool_id == pool.id, ClusterRow.deleted_at.is_(None)
        )
    ).all()
    if users:
        raise Conflict(
            f"capacity pool '{pool_id}' is used by {len(users)} live cluster(s): "
            f"{', '.join(users[:5])}",
            param="pool_id",
        )
    pool.deleted_at = now
    placement_cache.invalidate(session, (pool.region, pool.gpu_type))
    session.execute(
        update(HostRow)
        .where(HostRow.capacity_pool_id == pool.id)
        .values(capacity_pool_id=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return pool.id


def resolve_for_cluster(
    session: Session,
    pool_id: str | None,
    *,
    project_id: str,
    region: str,
    gpu_type: str,
    starts_at: datetime,
    now: datetime,
) -> CapacityPoolRow | None:
    """The pool a new cluster names, if it may draw from it (4xx otherwise)."""
    if pool_id is None:
        return None
    pool = session.get(CapacityPoolRow, pool_id)
    if pool is None or pool.deleted_at is not None:
        raise NotFound(f"capacity pool '{pool_id}' not found", param="capacity_pool_id")
    project = session.get(ProjectRow, project_id)
    owner_ok = pool.project_id == project_id or (
        pool.organization_id is not None
        and project is not None
        and project.organization_id == pool.organization_id
    )
    if not owner_ok:
        raise PermissionDenied(
            f"capacity pool '{pool_id}' is held for another project", param="capacity_pool_id"
        )
    if (pool.region, pool.gpu_type) != (region, gpu_type):
        raise InvalidRequest(
            f"capacity pool '{pool_id}' holds {pool.gpu_type} hosts in {pool.region}",
            param="capacity_pool_id",
        )
    if not pool.starts_at <= starts_at < pool.ends_at:
        raise InvalidRequest(
            f"capacity pool '{pool_id}' is active from {pool.starts_at.isoformat()} "
            f"until {pool.ends_at.isoformat()}; the cluster would start at "
            f"{starts_at.isoformat()}",
            param="capacity_pool_id",
        )
    return pool


def gpus_free_for(
    session: Session, pool: CapacityPoolRow, cluster: ClusterRow, now: datetime
) -> int:
    """GPUs `cluster` can draw from `pool` over its whole window: the pool first."""
    session.flush()
    calendar = load_calendar(session, pool.region, pool.gpu_type, now)
    mine = booking_of(cluster, pool, now)
    others = [b for b in calendar.pool_bookings(pool.id) if b.key != cluster.id]
    hosts = calendar.pool_hosts.get(pool.id, 0)
    free = hosts - peak(others, start=mine.starts_at, end=mine.ends_at)
    return max(0, min(free, cluster.num_gpus // GPUS_PER_NODE)) * GPUS_PER_NODE

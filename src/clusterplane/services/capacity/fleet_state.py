"""The operator's hand on fleet hosts: list with filters, drain, undrain, offline, online.

- Drain: the host keeps serving the cluster it holds, but is never handed out again
  (placement skips it, the claim refuses it) until undrained.
- Offline: out of service. Only a host no cluster holds can go offline (drain it first
  and let its cluster give it up); an offline host is never handed out.
- Online: an offline, quarantined or maintenance host that is still in the fleet file
  becomes available again (draining, if set, still keeps it out).

Every change drops the process's placement indexes, so the next decision reads the fleet
afresh; other replicas see it within their index lifetime, and their claims refuse
unplaceable hosts meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import HostRow
from clusterplane.domain.enums import HostState
from clusterplane.errors import FailedPrecondition, InvalidRequest, NotFound
from clusterplane.services.capacity import placement_cache


@dataclass(frozen=True)
class HostFilter:
    region: str | None = None
    gpu_type: str | None = None
    state: str | None = None
    fabric: str | None = None
    block: str | None = None
    rack: str | None = None
    cluster_id: str | None = None
    draining: bool | None = None
    placeable: bool | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in set(HostState):
            known = ", ".join(sorted(HostState))
            raise InvalidRequest(f"state must be one of {known}, got {self.state!r}", param="state")


def host_view(host: HostRow) -> dict[str, Any]:
    return {
        "id": host.id,
        "name": host.name,
        "region": host.region,
        "fabric": host.fabric,
        "block": host.block,
        "rack": host.rack,
        "gpu_type": host.gpu_type,
        "num_gpus": host.num_gpus,
        "state": host.state,
        "draining": host.draining,
        "placeable": _placeable(host),
        "in_fleet_file": host.in_fleet_file,
        "driver": host.driver,
        "cluster_id": host.cluster_id,
    }


def _placeable(host: HostRow) -> bool:
    return (
        host.state == HostState.AVAILABLE
        and not host.draining
        and host.in_fleet_file
        and host.cluster_id is None
    )


def list_hosts(session: Session, where: HostFilter) -> list[HostRow]:
    query = select(HostRow).order_by(HostRow.name)
    for column, value in (
        (HostRow.region, where.region),
        (HostRow.gpu_type, where.gpu_type),
        (HostRow.state, where.state),
        (HostRow.fabric, where.fabric),
        (HostRow.block, where.block),
        (HostRow.rack, where.rack),
        (HostRow.cluster_id, where.cluster_id),
        (HostRow.draining, where.draining),
    ):
        if value is not None:
            query = query.where(column == value)
    placeable = (
        (HostRow.state == HostState.AVAILABLE)
        & HostRow.draining.is_(False)
        & HostRow.in_fleet_file.is_(True)
        & HostRow.cluster_id.is_(None)
    )
    if where.placeable is True:
        query = query.where(placeable)
    elif where.placeable is False:
        query = query.where(~placeable)
    return list(session.scalars(query))


def get_host(session: Session, host: str) -> HostRow:
    """A host by id or name; 404 if neither matches."""
    row = session.scalar(
        select(HostRow).where(or_(HostRow.id == host, HostRow.name == host)).limit(1)
    )
    if row is None:
        raise NotFound(f"no host {host}", param="host")
    return row


def _changed(session: Session, host: HostRow, now: datetime) -> HostRow:
    host.updated_at = now
    session.flush()
    placement_cache.invalidate(session, (host.region, host.gpu_type))
    return host


def drain(session: Session, host_ref: str, *, now: datetime) -> HostRow:
    host = get_host(session, host_ref)
    host.draining = True
    return _changed(session, host, now)


def undrain(session: Session, host_ref: str, *, now: datetime) -> HostRow:
    host = get_host(session, host_ref)
    host.draining = False
    return _changed(session, host, now)


def mark_offline(session: Session, host_ref: str, *, now: datetime) -> HostRow:
    host = get_host(session, host_ref)
    if host.cluster_id is not None:
        raise FailedPrecondition(
            f"host {host.name} serves cluster {host.cluster_id}; drain it and wait until "
            "the cluster no longer holds it",
            param="host",
        )
    host.state = HostState.OFFLINE
    return _changed(session, host, now)


def mark_online(session: Session, host_ref: str, *, now: datetime) -> HostRow:
    host = get_host(session, host_ref)
    if host.cluster_id is not None:
        return host  # serving a cluster: in service already
    if not host.in_fleet_file:
        raise FailedPrecondition(
            f"host {host.name} is no longer in the fleet file; add it back there first",
            param="host",
        )
    host.state = HostState.AVAILABLE
    return _changed(session, host, now)

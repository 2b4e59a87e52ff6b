"""`/admin/v1/capacity/...`: the operator's capacity surface (admin keys only).

POST   /admin/v1/capacity/pools            define a pool (hosts by name, or a count)
GET    /admin/v1/capacity/pools            every live pool with its hosts
GET    /admin/v1/capacity/pools/{pool_id}
DELETE /admin/v1/capacity/pools/{pool_id}  only while no live cluster draws from it
GET    /admin/v1/capacity/calendar         bookings per region and GPU type over time
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator
from sqlalchemy import select

from clusterplane.api import presenters
from clusterplane.api.deps import RawBody, api_state, raw_body, validate
from clusterplane.api.openapi import request_body
from clusterplane.api.routers.admin import admin
from clusterplane.api.schemas.common import Identifier, Label, WireDatetime, field_error
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import CapacityPoolRow, HostRow
from clusterplane.domain.calendar import peak
from clusterplane.domain.enums import GpuType
from clusterplane.errors import InvalidRequest
from clusterplane.services.access.auth import Caller
from clusterplane.services.capacity import pools
from clusterplane.services.capacity.calendar import load_calendar
from clusterplane.services.capacity.catalog import check_gpu_type, get_region

router = APIRouter(prefix="/admin/v1/capacity", tags=["admin"], dependencies=[Depends(admin)])


class CreatePool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Label
    region: Identifier
    gpu_type: GpuType
    starts_at: WireDatetime
    ends_at: WireDatetime
    project_id: Identifier | None = None
    organization_id: Identifier | None = None
    host_names: Annotated[list[StrictStr], Field(min_length=1, max_length=4096)] | None = None
    num_hosts: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None

    @model_validator(mode="after")
    def check_window(self) -> CreatePool:
        if self.ends_at <= self.starts_at:
            raise field_error("ends_at", "must be later than starts_at")
        return self


def _pool(row: CapacityPoolRow, host_names: list[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "region": row.region,
        "gpu_type": row.gpu_type,
        "project_id": row.project_id,
        "organization_id": row.organization_id,
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
        "created_at": row.created_at,
        "hosts": host_names,
        "num_hosts": len(host_names),
    }


@router.post("/pools", openapi_extra=request_body(CreatePool))
def create_pool(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(admin)
) -> Response:
    req = validate(CreatePool, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = pools.create_pool(
            session,
            pools.PoolCreate(
                name=req.name,
                region=req.region,
                gpu_type=req.gpu_type,
                starts_at=req.starts_at,
                ends_at=req.ends_at,
                project_id=req.project_id,
                organization_id=req.organization_id,
                host_names=req.host_names,
                num_hosts=req.num_hosts,
            ),
            now=state.clock.now(),
        )
        session.flush()
        result = _pool(row, pools.pool_host_names(session, row.id))
    state.nudge()
    return presenters.json_response(result)


@router.get("/pools")
def list_pools(request: Request, caller: Caller = Depends(admin)) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        result = [_pool(p, pools.pool_host_names(session, p.id)) for p in pools.list_pools(session)]
    return presenters.json_response({"pools": result})


@router.get("/pools/{pool_id}")
def get_pool(pool_id: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    with read_transaction(api_state(request).sessions) as session:
        row = pools.get_pool(session, pool_id)
        result = _pool(row, pools.pool_host_names(session, row.id))
    return presenters.json_response(result)


@router.delete("/pools/{pool_id}")
def delete_pool(pool_id: str, request: Request, caller: Caller = Depends(admin)) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        deleted = pools.delete_pool(session, pool_id, now=state.clock.now())
    state.nudge()
    return presenters.json_response({"id": deleted, "deleted": True})


def _groups(request: Request) -> list[tuple[str, str]]:
    """The (region, GPU type) pairs asked for: all the fleet has, narrowed by the query."""
    params = request.query_params
    region, gpu_type = params.get("region") or None, params.get("gpu_type") or None
    if gpu_type is not None and gpu_type not in GpuType.__members__.values():
        raise InvalidRequest(f"gpu_type: unknown value '{gpu_type}'", param="gpu_type")
    with read_transaction(api_state(request).sessions) as session:
        if region is not None:
            get_region(session, region)
            if gpu_type is not None:
                check_gpu_type(session, region, gpu_type)
        pairs = session.execute(
            select(HostRow.region, HostRow.gpu_type).distinct().order_by(HostRow.region)
        ).all()
    return [
        (r, g)
        for r, g in pairs
        if (region is None or r == region) and (gpu_type is None or g == gpu_type)
    ]


@router.get("/calendar")
def calendar(request: Request, caller: Caller = Depends(admin)) -> Response:
    """Per region and GPU type: capacity, every booking with its window, the peak."""
    state = api_state(request)
    now = state.clock.now()
    groups = []
    for region, gpu_type in _groups(request):
        with read_transaction(state.sessions) as session:
            cal = load_calendar(session, region, gpu_type, now)
        general = cal.general_bookings()
        groups.append(
            {
                "region": region,
                "gpu_type": gpu_type,
                "general_hosts": cal.general.base,
                "hosts_returning": [
                    {"at": when, "hosts": count} for when, count in cal.general.additions
                ],
                "peak_booked_nodes": peak(general, start=now, end=None),
                "pools": [
                    {
                        "id": pool.id,
                        "hosts": cal.pool_hosts.get(pool.id, 0),
                        "starts_at": pool.starts_at,
                        "ends_at": pool.ends_at,
                        "peak_booked_nodes": peak(
                            cal.pool_bookings(pool.id), start=now, end=pool.ends_at
                        ),
                    }
                    for pool in cal.pools.values()
                    if pool.ends_at > now
                ],
                "bookings": [
                    {
                        "cluster_id": e.cluster_id,
                        "cluster_name": e.cluster_name,
                        "project_id": e.project_id,
                        "billing_type": e.billing_type,
                        "capacity_pool_id": e.capacity_pool_id,
                        "general_nodes": e.general_nodes,
                        "pool_nodes": e.pool_nodes,
                        "fabric": e.booked_fabric,
                        "starts_at": e.starts_at,
                        "ends_at": e.ends_at,
                    }
                    for e in sorted(cal.entries, key=lambda e: (e.starts_at, e.cluster_id))
                ],
            }
        )
    return presenters.json_response({"now": now, "calendar": groups})

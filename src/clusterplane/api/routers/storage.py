"""`/v1/compute/clusters/storage/volumes`: shared volumes (spec §2.7)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from clusterplane.api import presenters
from clusterplane.api.deps import (
    RawBody,
    api_state,
    current_caller,
    project_filter,
    raw_body,
    validate,
)
from clusterplane.api.openapi import request_body
from clusterplane.api.replay import create_once
from clusterplane.api.schemas import (
    ClusterStorageResponse,
    CreateVolumeRequest,
    StorageDeleteResponse,
    StorageListResponse,
    UpdateVolumeRequest,
)
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import VolumeRow
from clusterplane.services.access.auth import Caller
from clusterplane.services.clusters import volumes

router = APIRouter(tags=["storage"])
PATH = "/compute/clusters/storage/volumes"


@router.get(PATH, response_model=StorageListResponse)
def list_volumes(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        rows = volumes.list_volumes(session, caller, project_filter(request))
        body = {"volumes": [presenters.volume(r) for r in rows]}
    return presenters.json_response(body)


@router.post(
    PATH, response_model=ClusterStorageResponse, openapi_extra=request_body(CreateVolumeRequest)
)
def create_volume(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(current_caller)
) -> Response:
    req = validate(CreateVolumeRequest, body)
    state = api_state(request)
    now = state.clock.now()
    independent = True if req.is_lifecycle_independent is None else req.is_lifecycle_independent
    with transaction(state.sessions) as session:
        row = create_once(
            request,
            session,
            caller,
            body,
            row_type=VolumeRow,
            resource_type="volume",
            now=now,
            create=lambda: volumes.create_volume(
                session,
                caller,
                volume_name=req.volume_name,
                size_tib=req.size_tib,
                region=req.region,
                now=now,
                project_id=req.project_id,
                is_lifecycle_independent=independent,
                instance_cluster_id=req.instance_cluster_id,
                limits=state.settings.storage,
                capacity=state.settings.capacity,
            ),
        )
        result = presenters.volume(row)
    state.nudge()
    return presenters.json_response(result)


@router.put(
    PATH, response_model=ClusterStorageResponse, openapi_extra=request_body(UpdateVolumeRequest)
)
def update_volume(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(current_caller)
) -> Response:
    req = validate(UpdateVolumeRequest, body)
    state = api_state(request)
    with transaction(state.sessions) as session:
        row = volumes.resize_volume(
            session,
            caller,
            req.volume_id,
            req.size_tib,
            now=state.clock.now(),
            limits=state.settings.storage,
            capacity=state.settings.capacity,
        )
        result = presenters.volume(row)
    state.nudge()
    return presenters.json_response(result)


@router.get(PATH + "/{volume_id}", response_model=ClusterStorageResponse)
def retrieve_volume(
    volume_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        result = presenters.volume(volumes.get_volume(session, caller, volume_id))
    return presenters.json_response(result)


@router.delete(PATH + "/{volume_id}", response_model=StorageDeleteResponse)
def delete_volume(
    volume_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        volumes.delete_volume(session, caller, volume_id, now=state.clock.now())
    state.nudge()
    return presenters.json_response({"success": True})

"""`/v1/compute/clusters`: list, create, retrieve, update, delete (spec §2.1-§2.5)."""

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
    ClusterDeleteResponse,
    ClusterListResponse,
    ClusterResponse,
    CreateClusterRequest,
    UpdateClusterRequest,
)
from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.rows import ClusterRow
from clusterplane.domain.enums import ClusterType
from clusterplane.services import clusters
from clusterplane.services.auth import Caller
from clusterplane.services.cluster_views import load_details

router = APIRouter(tags=["clusters"])


def to_create(req: CreateClusterRequest) -> clusters.ClusterCreate:
    nested = {
        name: getattr(req, name).model_dump(mode="json", exclude_none=True)
        for name in ("shared_volume", "cluster_config", "oidc_config", "acceptance_tests_params")
        if getattr(req, name) is not None
    }
    return clusters.ClusterCreate(
        cluster_name=req.cluster_name,
        billing_type=req.billing_type,
        gpu_type=req.gpu_type,
        num_gpus=req.num_gpus,
        region=req.region,
        cluster_type=req.cluster_type or ClusterType.KUBERNETES,
        nvidia_version_id=req.nvidia_version_id,
        cuda_version=req.cuda_version,
        nvidia_driver_version=req.nvidia_driver_version,
        duration_days=req.duration_days,
        num_reserved_gpus=req.num_reserved_gpus,
        capacity_pool_id=req.capacity_pool_id,
        num_capacity_pool_gpus=req.num_capacity_pool_gpus,
        num_preemptible_gpus=req.num_preemptible_gpus,
        auto_scale=req.wants_auto_scale,
        auto_scale_max_gpus=req.auto_scale_max_gpus,
        reservation_start_time=req.reservation_start_time,
        reservation_end_time=req.reservation_end_time,
        volume_id=req.volume_id,
        slurm_shm_size_gib=req.slurm_shm_size_gib,
        slurm_image=req.slurm_image,
        install_traefik=bool(req.install_traefik),
        project_id=req.project_id,
        add_ons=[a.model_dump(mode="json", exclude_none=True) for a in req.add_ons or []],
        **nested,
    )


def to_update(req: UpdateClusterRequest) -> clusters.ClusterUpdate:
    return clusters.ClusterUpdate(
        num_gpus=req.num_gpus,
        cluster_type=req.cluster_type,
        num_reserved_gpus=req.num_reserved_gpus,
        num_capacity_pool_gpus=req.num_capacity_pool_gpus,
        num_preemptible_gpus=req.num_preemptible_gpus,
        reservation_end_time=req.reservation_end_time,
        add_ons=(
            [a.model_dump(mode="json", exclude_none=True) for a in req.add_ons]
            if req.add_ons is not None
            else None
        ),
        cluster_config=(
            req.cluster_config.model_dump(mode="json", exclude_none=True)
            if req.cluster_config is not None
            else None
        ),
    )


@router.get("/compute/clusters", response_model=ClusterListResponse)
def list_clusters(request: Request, caller: Caller = Depends(current_caller)) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        rows = clusters.list_clusters(session, caller, project_filter(request))
        details = load_details(session, rows, now=state.clock.now())
        body = {"clusters": [presenters.cluster(d) for d in details]}
    return presenters.json_response(body)


@router.post(
    "/compute/clusters",
    response_model=ClusterResponse,
    openapi_extra=request_body(CreateClusterRequest),
)
def create_cluster(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(current_caller)
) -> Response:
    req = validate(CreateClusterRequest, body)
    state = api_state(request)
    now = state.clock.now()
    with transaction(state.sessions) as session:
        row = create_once(
            request,
            session,
            caller,
            body,
            row_type=ClusterRow,
            resource_type="cluster",
            now=now,
            create=lambda: clusters.create_cluster(
                session,
                caller,
                to_create(req),
                now=now,
                base_domain=state.settings.server.cluster_base_domain,
                acceptance_tests_by_default=state.settings.engine.acceptance_tests_by_default,
            ),
        )
        result = presenters.cluster(load_details(session, [row], now=now)[0])
    state.nudge()
    return presenters.json_response(result)


@router.get("/compute/clusters/{cluster_id}", response_model=ClusterResponse)
def retrieve_cluster(
    cluster_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    with read_transaction(state.sessions) as session:
        row = clusters.get_cluster(session, caller, cluster_id)
        result = presenters.cluster(load_details(session, [row], now=state.clock.now())[0])
    return presenters.json_response(result)


@router.put(
    "/compute/clusters/{cluster_id}",
    response_model=ClusterResponse,
    openapi_extra=request_body(UpdateClusterRequest),
)
def update_cluster(
    cluster_id: str,
    request: Request,
    body: RawBody = Depends(raw_body),
    caller: Caller = Depends(current_caller),
) -> Response:
    req = validate(UpdateClusterRequest, body)
    state = api_state(request)
    now = state.clock.now()
    with transaction(state.sessions) as session:
        row = clusters.update_cluster(session, caller, cluster_id, to_update(req), now=now)
        result = presenters.cluster(load_details(session, [row], now=now)[0])
    state.nudge()
    return presenters.json_response(result)


@router.delete("/compute/clusters/{cluster_id}", response_model=ClusterDeleteResponse)
def delete_cluster(
    cluster_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    with transaction(state.sessions) as session:
        deleted = clusters.delete_cluster(session, caller, cluster_id, now=state.clock.now())
    state.nudge()
    return presenters.json_response({"cluster_id": deleted})

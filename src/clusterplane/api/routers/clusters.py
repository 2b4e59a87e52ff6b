"""`/v1/compute/clusters`: list, create, retrieve, update, delete (spec §2.1-§2.5)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from clusterplane.api import presenters
from clusterplane.api.deps import (
    RawBody,
    api_state,
    current_caller,
    project_filter,
    raw_body,
    request_checks,
    validate,
)
from clusterplane.api.openapi import request_body
from clusterplane.api.replay import create_once
from clusterplane.api.request_metrics import LabelledRoute
from clusterplane.api.schemas import (
    ClusterDeleteResponse,
    ClusterListResponse,
    ClusterResponse,
    CreateClusterRequest,
    UpdateClusterRequest,
)
from clusterplane.api.state import ApiState
from clusterplane.db.prepared import Reader, read_snapshot
from clusterplane.db.retry import write_retrying
from clusterplane.db.rows import ClusterRow
from clusterplane.domain.enums import ClusterType
from clusterplane.services.access.auth import Caller
from clusterplane.services.clusters import cluster_documents, clusters
from clusterplane.services.clusters.cluster_documents import Stored
from clusterplane.services.clusters.cluster_views import list_ids

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
    """The whole list (the wire has no pagination), with no database connection held while
    its bytes go to the client (a client that stops reading must not hold one).

    The ids and the first page are read in one short transaction. A short list is answered
    as one body; a longer one (or one whose first page is large) is streamed in chunks,
    each later page read in its own short transaction once the client took the previous
    one, so a slow reader holds at most a page in memory. Each cluster is shown as one
    snapshot saw it; one deleted while the list goes out is left out.
    """
    state = api_state(request)
    now = state.clock.now()
    with read_snapshot(state.sessions) as reader:
        ids = list_ids(reader, caller, project_filter(request))
        encoded = deque(_page(reader, state, ids[:LIST_PAGE], now))
    if len(ids) <= LIST_PAGE and sum(map(len, encoded)) <= ONE_BODY_BYTES:
        return Response(LIST_OPEN + b",".join(encoded) + LIST_CLOSE, media_type="application/json")
    return StreamingResponse(
        _chunks(_stream(state, ids[LIST_PAGE:], encoded, now)), media_type="application/json"
    )


LIST_OPEN = b'{"clusters":['
LIST_CLOSE = b"]}"
LIST_PAGE = 100  # clusters read per transaction while a long list is streamed
ONE_BODY_BYTES = 1 << 20  # a list up to this size (and one page) is answered as one body
CHUNK_BYTES = 1 << 16  # a streamed list goes out in chunks of about this size


def _page(reader: Reader, state: ApiState, ids: list[str], now: datetime) -> list[bytes]:
    return cluster_documents.read_many(reader, ids, now=now, box=state.secrets)


def _stream(
    state: ApiState, rest: list[str], first: deque[bytes], now: datetime
) -> Iterator[bytes]:
    """The clusters of `first` (dropped as they go out), then those of `rest`, a page per
    read transaction, each transaction closed before its clusters are handed on."""
    while first:
        yield first.popleft()
    for start in range(0, len(rest), LIST_PAGE):
        with read_snapshot(state.sessions) as reader:
            page = _page(reader, state, rest[start : start + LIST_PAGE], now)
        yield from page


def _chunks(clusters_json: Iterator[bytes]) -> Iterator[bytes]:
    """`{"clusters":[...]}` around the encoded clusters, in chunks of about CHUNK_BYTES."""
    pending = [LIST_OPEN]
    size = len(LIST_OPEN)
    separator = b""
    for body in clusters_json:
        pending += (separator, body)
        size += len(body) + 1
        separator = b","
        if size >= CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(LIST_CLOSE)
    yield b"".join(pending)


@router.post(
    "/compute/clusters",
    response_model=ClusterResponse,
    openapi_extra=request_body(CreateClusterRequest),
)
def create_cluster(
    request: Request, body: RawBody = Depends(raw_body), caller: Caller = Depends(current_caller)
) -> Response:
    """Documents the operation; requests are served by `create_route`, ahead of it."""
    return _create(request, caller, body)


async def _create_served(request: Request) -> Response:
    """POST of a cluster as a plain route, like GET of one (`_retrieve_served`): the same
    checks, caller and body as the documented route, without FastAPI's solving of them."""
    await request_checks(request)
    caller = await current_caller(request)
    body = await raw_body(request, caller)
    return await run_in_threadpool(_create, request, caller, body)


def create_route(prefix: str) -> Route:
    return LabelledRoute(
        f"{prefix}/compute/clusters", _create_served, methods=["POST"], include_in_schema=False
    )


def _create(request: Request, caller: Caller, body: RawBody) -> Response:
    req = validate(CreateClusterRequest, body)
    state = api_state(request)
    now = state.clock.now()

    def create(session: Session) -> bytes:
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
                wall_now=state.wall_clock.now(),
                box=state.secrets,
                base_domain=state.settings.server.cluster_base_domain,
                acceptance_tests_by_default=state.settings.engine.acceptance_tests_by_default,
                drain=state.settings.engine.preemption_drain,
                storage=state.settings.storage,
                capacity=state.settings.capacity,
            ),
        )
        return cluster_documents.respond_after_write(
            session, row.id, now=now, box=state.secrets, keep=False
        )

    result = write_retrying(state.sessions, create)
    state.nudge()
    return Response(result, media_type="application/json")


@router.get("/compute/clusters/{cluster_id}", response_model=ClusterResponse)
async def retrieve_cluster(
    cluster_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    """Documents the operation; requests are served by `retrieve_route`, ahead of it."""
    return await _answer(request, caller, cluster_id)


async def _retrieve_served(request: Request) -> Response:
    """GET of a cluster, the path clients poll while a cluster comes up, as a plain route:
    the same checks and caller as every API route (`request_checks`, `current_caller`),
    without FastAPI's solving of them, which cost more than the rest of the request."""
    await request_checks(request)
    caller = await current_caller(request)
    return await _answer(request, caller, request.path_params["cluster_id"])


def retrieve_route(prefix: str) -> Route:
    return LabelledRoute(
        f"{prefix}/compute/clusters/{{cluster_id}}",
        _retrieve_served,
        methods=["GET"],
        include_in_schema=False,
    )


async def _answer(request: Request, caller: Caller, cluster_id: str) -> Response:
    """Answered from `state.reads` while this server has written nothing since the answer
    was read (api/read_cache.py), else from the cluster's stored document, read on the
    event loop where the database allows (db/loop_reads.py), else on a worker thread."""
    state = api_state(request)
    generation = state.writes.value  # before reading: a write after it voids the entry
    key = f"cluster:{cluster_id}"
    hit = state.reads.get(key, generation)
    if hit is not None and caller.can_see(hit.project_id):
        return Response(hit.body, media_type="application/json")
    loop = state.loop_reads
    found = None if loop is None else loop.all(cluster_documents.STORED_ONE, id=cluster_id)
    now, box = state.clock.now(), state.secrets
    answer = (
        None
        if found is None
        else cluster_documents.answer_stored(found, caller, cluster_id, now=now, box=box)
    )
    if answer is None:  # not read on the loop, or its document is behind
        answer = await run_in_threadpool(_retrieve, state, caller, cluster_id, found)
    project_id, body = answer
    state.reads.put(key, generation=generation, project_id=project_id, body=body)
    return Response(body, media_type="application/json")


def _retrieve(
    state: ApiState, caller: Caller, cluster_id: str, found: list[Stored] | None
) -> tuple[str, bytes]:
    return cluster_documents.read_one(
        state.sessions, caller, cluster_id, now=state.clock.now(), box=state.secrets, found=found
    )


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

    def update(session: Session) -> bytes:
        row = clusters.update_cluster(
            session,
            caller,
            cluster_id,
            to_update(req),
            now=now,
            drain=state.settings.engine.preemption_drain,
            box=state.secrets,
            capacity=state.settings.capacity,
        )
        return cluster_documents.respond_after_write(session, row.id, now=now, box=state.secrets)

    result = write_retrying(state.sessions, update)
    state.nudge()
    return Response(result, media_type="application/json")


@router.delete("/compute/clusters/{cluster_id}", response_model=ClusterDeleteResponse)
def delete_cluster(
    cluster_id: str, request: Request, caller: Caller = Depends(current_caller)
) -> Response:
    state = api_state(request)
    deleted = write_retrying(
        state.sessions,
        lambda session: clusters.delete_cluster(session, caller, cluster_id, now=state.clock.now()),
    )
    state.nudge()
    return presenters.json_response({"cluster_id": deleted})

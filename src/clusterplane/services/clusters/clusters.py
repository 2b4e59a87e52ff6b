"""Cluster use cases: create, read, list, update (scale, extend, configure) and delete.

Handlers call these and return at once; the lifecycle controller does the slow work. Every
write here happens in the caller's transaction and leaves `next_reconcile_at = now` so the
controllers pick the change up on their next pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterPhaseTransitionRow, ClusterRow, NodeRow, RegionRow
from clusterplane.domain.enums import (
    BillingType,
    ClusterPhase,
    ClusterType,
    NodeRole,
)
from clusterplane.domain.lifecycle import status_for
from clusterplane.errors import CapacityUnavailable, FailedPrecondition, InvalidRequest, NotFound
from clusterplane.services.access.auth import Caller, resolve_project
from clusterplane.services.access.ids import new_seed, new_uuid
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.capacity import pools, quotas
from clusterplane.services.capacity.allocation import GPUS_PER_NODE, add_control_plane_nodes
from clusterplane.services.capacity.calendar import check_cluster_booking, lock_region
from clusterplane.services.capacity.catalog import check_gpu_type, get_region, resolve_driver
from clusterplane.services.capacity.claims import START_LEAD, claim_workers
from clusterplane.services.clusters import addons, volumes
from clusterplane.services.clusters.cluster_secrets import ensure_ssh_ca, provision
from clusterplane.services.clusters.credentials import api_server_url
from clusterplane.services.clusters.volumes import DEFAULT_LIMITS
from clusterplane.services.events.events import cluster_scope, record_event, set_cluster_phase
from clusterplane.settings import CapacitySettings, StorageSettings

DEFAULT_DRAIN = timedelta(minutes=5)
DEFAULT_CAPACITY = CapacitySettings()


@dataclass
class ClusterCreate:
    """A validated create request (the wire model, minus transport details)."""

    cluster_name: str
    billing_type: BillingType
    gpu_type: str
    num_gpus: int
    region: str
    cluster_type: ClusterType = ClusterType.KUBERNETES
    nvidia_version_id: str | None = None
    cuda_version: str | None = None
    nvidia_driver_version: str | None = None
    duration_days: int | None = None
    num_reserved_gpus: int | None = None
    capacity_pool_id: str | None = None
    num_capacity_pool_gpus: int | None = None
    num_preemptible_gpus: int | None = None
    auto_scale: bool = False
    auto_scale_max_gpus: int | None = None
    reservation_start_time: datetime | None = None
    reservation_end_time: datetime | None = None
    volume_id: str | None = None
    shared_volume: dict[str, Any] | None = None
    slurm_shm_size_gib: int | None = None
    slurm_image: str | None = None
    install_traefik: bool = False
    project_id: str | None = None
    add_ons: list[dict[str, Any]] = field(default_factory=list)
    cluster_config: dict[str, Any] | None = None
    oidc_config: dict[str, Any] | None = None
    acceptance_tests_params: dict[str, Any] | None = None


@dataclass
class ClusterUpdate:
    num_gpus: int | None = None
    cluster_type: ClusterType | None = None
    num_reserved_gpus: int | None = None
    num_capacity_pool_gpus: int | None = None
    num_preemptible_gpus: int | None = None
    reservation_end_time: datetime | None = None
    add_ons: list[dict[str, Any]] | None = None
    cluster_config: dict[str, Any] | None = None


def find_cluster(session: Session, caller: Caller, cluster_id: str) -> ClusterRow | None:
    row = session.get(ClusterRow, cluster_id)
    if row is None or row.deleted_at is not None or not caller.can_see(row.project_id):
        return None
    return row


def get_cluster(session: Session, caller: Caller, cluster_id: str) -> ClusterRow:
    row = find_cluster(session, caller, cluster_id)
    if row is None:
        raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
    return row


def list_clusters(session: Session, caller: Caller, project_id: str | None) -> list[ClusterRow]:
    scope = caller.project_id if project_id is None else project_id
    if not caller.can_see(scope):
        return []
    return list(
        session.scalars(
            select(ClusterRow)
            .where(ClusterRow.project_id == scope, ClusterRow.deleted_at.is_(None))
            .order_by(ClusterRow.created_at, ClusterRow.id)
        )
    )


def _check_billing(req: ClusterCreate, now: datetime, horizon: timedelta) -> None:
    start, end = req.reservation_start_time, req.reservation_end_time
    if start is not None and start > now + horizon:
        raise InvalidRequest(
            f"reservation_start_time may be at most {horizon.days} days ahead on this "
            f"server (until {(now + horizon).isoformat()}); {start.isoformat()} is later",
            param="reservation_start_time",
        )
    if req.billing_type == BillingType.ON_DEMAND and (start or end):
        raise InvalidRequest(
            "reservation times are only for RESERVED or SCHEDULED_CAPACITY",
            param="reservation_end_time",
        )
    if req.billing_type == BillingType.RESERVED and req.duration_days is None and end is None:
        raise InvalidRequest(
            "duration_days is required for RESERVED billing", param="duration_days"
        )
    if end is not None and end <= max(now, start or now):
        raise InvalidRequest(
            "reservation_end_time must be in the future and after the start",
            param="reservation_end_time",
        )
    if req.num_preemptible_gpus and req.cluster_type == ClusterType.SLURM:
        raise InvalidRequest(
            "preemptible GPUs are available on KUBERNETES clusters only",
            param="num_preemptible_gpus",
        )


_FIRST_PHASE = insert(cast(Table, ClusterPhaseTransitionRow.__table__))


def create_cluster(
    session: Session,
    caller: Caller,
    req: ClusterCreate,
    *,
    now: datetime,
    wall_now: datetime,
    box: SecretBox,
    base_domain: str,
    acceptance_tests_by_default: bool = True,
    drain: timedelta = DEFAULT_DRAIN,
    storage: StorageSettings = DEFAULT_LIMITS,
    capacity: CapacitySettings = DEFAULT_CAPACITY,
) -> ClusterRow:
    """Write the cluster and book its capacity in the calendar (409 if the booking cannot
    be honoured). A cluster that starts now claims its workers' hosts at once; a scheduled
    one claims them at its start (the cluster controller). `now` is fleet time; the
    credentials are issued at `wall_now`, since real clients check them against it."""
    project_id = resolve_project(caller, req.project_id)
    region = get_region(session, req.region)
    check_gpu_type(session, region.name, req.gpu_type)
    driver = resolve_driver(
        region,
        nvidia_version_id=req.nvidia_version_id,
        cuda_version=req.cuda_version,
        nvidia_driver_version=req.nvidia_driver_version,
    )
    _check_billing(req, now, capacity.booking_horizon)
    pool = pools.resolve_for_cluster(
        session,
        req.capacity_pool_id,
        project_id=project_id,
        region=region.name,
        gpu_type=req.gpu_type,
        starts_at=max(now, req.reservation_start_time or now),
        now=now,
    )
    addon_list = addons.validate_new(req.add_ons, req.cluster_type)
    addons.check_cluster_config(req.cluster_config, req.cluster_type)
    # One order of row locks for every path that places hosts (region, then quota), so
    # concurrent creates and scales on PostgreSQL queue instead of deadlocking.
    lock_region(session, region.name)
    quotas.check(session, project_id, req.num_gpus)
    quotas.check_preemptible(
        session,
        project_id,
        (region.name, req.gpu_type),
        req.num_preemptible_gpus or 0,
        settings=capacity,
    )
    cluster_id = new_uuid()
    scheduled = req.reservation_start_time is not None and req.reservation_start_time > now
    phase = ClusterPhase.SCHEDULED if scheduled else ClusterPhase.QUEUED
    duration_hours = req.duration_days * 24 if req.duration_days is not None else None
    end = req.reservation_end_time
    if req.billing_type == BillingType.RESERVED and duration_hours is None and end is not None:
        span = (end - (req.reservation_start_time or now)).total_seconds()
        duration_hours = max(1, -(-int(span) // 3600))
    if req.billing_type == BillingType.RESERVED and end is None and duration_hours is not None:
        end = (req.reservation_start_time or now) + timedelta(hours=duration_hours)
    tests = dict(req.acceptance_tests_params or {})
    tests.setdefault("enabled", acceptance_tests_by_default)
    cluster = ClusterRow(
        id=cluster_id,
        project_id=project_id,
        organization_id=caller.organization_id,
        name=req.cluster_name,
        cluster_type=req.cluster_type,
        region=region.name,
        gpu_type=req.gpu_type,
        billing_type=req.billing_type,
        phase=phase,
        status=status_for(phase),
        num_gpus=req.num_gpus,
        num_reserved_gpus=(
            req.num_reserved_gpus
            if req.num_reserved_gpus is not None
            else req.num_gpus
            if req.billing_type == BillingType.RESERVED
            else 0
        ),
        num_capacity_pool_gpus=0,
        capacity_pool_id=pool.id if pool is not None else None,
        desired_preemptible_gpus=req.num_preemptible_gpus or 0,
        num_cpu_workers=0,
        cuda_version=driver.cuda_version,
        nvidia_driver_version=driver.nvidia_driver_version,
        nvidia_driver_version_id=driver.id,
        os_image=driver.os,
        duration_hours=duration_hours,
        reservation_start_time=req.reservation_start_time,
        reservation_end_time=end,
        install_traefik=req.install_traefik,
        slurm_shm_size_gib=req.slurm_shm_size_gib,
        slurm_image=req.slurm_image,
        auto_scale=req.auto_scale,
        auto_scale_max_gpus=req.auto_scale_max_gpus,
        add_ons=addon_list,
        cluster_config=req.cluster_config,
        oidc_config=req.oidc_config,
        acceptance_tests_params=tests,
        api_server_url=api_server_url(
            cluster_id=cluster_id, region=region.name, base_domain=base_domain
        ),
        credentials=None,
        kube_config="",
        control_plane_ready=False,
        seed=new_seed(),
        booked_seq=_next_booking(region),
        step_state=None,
        created_at=now,
        updated_at=now,
        first_ready_at=None,
        delete_requested_at=None,
        deleted_at=None,
        next_reconcile_at=now,
    )
    # Issued before the row is written, so it is written once, credentials and all.
    provision(cluster, box, wall_now)
    session.add(cluster)
    session.flush()
    first_phase = {"cluster_id": cluster_id, "phase": phase, "transition_time": now}
    session.execute(_FIRST_PHASE, first_phase)
    if pool is not None:
        cluster.num_capacity_pool_gpus = (
            req.num_capacity_pool_gpus
            if req.num_capacity_pool_gpus is not None
            else pools.gpus_free_for(session, pool, cluster, now)
        )
    if not scheduled:
        claim_workers(session, cluster, now, drain=drain, strict=True)
    check_cluster_booking(session, cluster, now, notice=drain + START_LEAD)
    add_control_plane_nodes(session, cluster, region, now)
    _attach_volume(session, caller, cluster, req, now, storage, capacity)
    record_event(
        session,
        object_type="cluster",
        object_id=cluster.id,
        kind="created",
        message=f"{req.num_gpus} x {req.gpu_type} in {region.name}",
        at=now,
        scope=cluster_scope(cluster),
    )
    return cluster


def _next_booking(region: RegionRow) -> int:
    """The next number in the order bookings of the region are made in (the caller holds
    the region's row lock)."""
    region.booking_seq = (region.booking_seq or 0) + 1
    return region.booking_seq


def _attach_volume(
    session: Session,
    caller: Caller,
    cluster: ClusterRow,
    req: ClusterCreate,
    now: datetime,
    storage: StorageSettings,
    capacity: CapacitySettings,
) -> None:
    if req.volume_id is not None:
        volumes.attach_existing(session, caller, cluster, req.volume_id, now=now)
    elif req.shared_volume is not None:
        volumes.create_inline(
            session,
            caller,
            cluster,
            req.shared_volume,
            now=now,
            limits=storage,
            capacity=capacity,
        )


def live_workers(session: Session, cluster_id: str) -> list[NodeRow]:
    return list(
        session.scalars(
            select(NodeRow)
            .where(
                NodeRow.cluster_id == cluster_id,
                NodeRow.role == NodeRole.GPU_WORKER,
                NodeRow.deleted_at.is_(None),
                NodeRow.preemptible.is_(False),
            )
            .order_by(NodeRow.ordinal)
        )
    )


def update_cluster(
    session: Session,
    caller: Caller,
    cluster_id: str,
    req: ClusterUpdate,
    *,
    now: datetime,
    drain: timedelta = DEFAULT_DRAIN,
    box: SecretBox,
    capacity: CapacitySettings = DEFAULT_CAPACITY,
) -> ClusterRow:
    cluster = get_cluster(session, caller, cluster_id)
    if cluster.phase == ClusterPhase.DELETING:
        raise FailedPrecondition("the cluster is being deleted", param="cluster_id")
    if req.cluster_type is not None and req.cluster_type != cluster.cluster_type:
        raise InvalidRequest(
            f"cluster_type cannot change on a live cluster (it is {cluster.cluster_type})",
            param="cluster_type",
        )
    if req.num_preemptible_gpus is not None:
        lock_region(session, cluster.region)
        quotas.check_preemptible(
            session,
            cluster.project_id,
            (cluster.region, cluster.gpu_type),
            req.num_preemptible_gpus,
            cluster_id=cluster.id,
            previous=cluster.desired_preemptible_gpus,
            settings=capacity,
        )
    _update_counts(cluster, req)
    if req.reservation_end_time is not None:
        _extend(cluster, req.reservation_end_time, now)
    if (
        req.reservation_end_time is not None
        or req.num_capacity_pool_gpus is not None
        or (req.num_gpus is not None and req.num_gpus > cluster.num_gpus)
    ):
        before = cluster.num_gpus
        cluster.num_gpus = req.num_gpus if req.num_gpus is not None else before
        _check_more_booked(session, cluster, now, drain + START_LEAD)
        cluster.num_gpus = before
    if req.add_ons is not None:
        cluster.add_ons = addons.merge_updates(
            cluster.add_ons, req.add_ons, ClusterType(cluster.cluster_type)
        )
    if req.cluster_config is not None:
        cluster.cluster_config = addons.merge_cluster_config(
            cluster.cluster_config, req.cluster_config, ClusterType(cluster.cluster_type)
        )
        ensure_ssh_ca(cluster, box)
    if req.num_gpus is not None and req.num_gpus != cluster.num_gpus:
        _scale(session, cluster, req.num_gpus, now, drain)
    cluster.updated_at = now
    cluster.next_reconcile_at = now
    record_event(
        session,
        object_type="cluster",
        object_id=cluster.id,
        kind="updated",
        message="update accepted",
        at=now,
        scope=cluster_scope(cluster),
    )
    return cluster


def _check_more_booked(
    session: Session, cluster: ClusterRow, now: datetime, notice: timedelta
) -> None:
    """Check a cluster that books more. An on-demand cluster keeps its place in the order
    of bookings if it still fits beside every reservation; otherwise it is booked anew,
    after them, and so yields to those that need its hosts when they start."""
    open_ended = cluster.reservation_end_time is None and cluster.capacity_pool_id is None
    if not open_ended:
        check_cluster_booking(session, cluster, now)
        return
    try:
        check_cluster_booking(session, cluster, now)
    except CapacityUnavailable:
        region = session.get(RegionRow, cluster.region)
        if region is None:
            raise
        cluster.booked_seq = _next_booking(region)
        check_cluster_booking(session, cluster, now, notice=notice)
        record_event(
            session,
            object_type="cluster",
            object_id=cluster.id,
            kind="booked_after_reservations",
            message="scaled up into hosts that reservations need later: it yields to them",
            at=now,
            scope=cluster_scope(cluster),
        )


def _update_counts(cluster: ClusterRow, req: ClusterUpdate) -> None:
    target = req.num_gpus if req.num_gpus is not None else cluster.num_gpus
    if req.num_reserved_gpus is not None:
        if cluster.billing_type != BillingType.RESERVED:
            raise InvalidRequest(
                "num_reserved_gpus applies to RESERVED clusters only", param="num_reserved_gpus"
            )
        if req.num_reserved_gpus > target:
            raise InvalidRequest(
                "num_reserved_gpus cannot exceed num_gpus", param="num_reserved_gpus"
            )
        cluster.num_reserved_gpus = req.num_reserved_gpus
    elif cluster.num_reserved_gpus > target:
        raise InvalidRequest(
            f"num_gpus {target} is below the {cluster.num_reserved_gpus} reserved GPUs",
            param="num_gpus",
        )
    if req.num_capacity_pool_gpus is not None:
        if cluster.capacity_pool_id is None:
            raise InvalidRequest(
                "num_capacity_pool_gpus needs a cluster created from a pool",
                param="num_capacity_pool_gpus",
            )
        if req.num_capacity_pool_gpus > target:
            raise InvalidRequest(
                "num_capacity_pool_gpus cannot exceed num_gpus", param="num_capacity_pool_gpus"
            )
        changed = req.num_capacity_pool_gpus != cluster.num_capacity_pool_gpus
        if changed and cluster.phase != ClusterPhase.SCHEDULED:
            # Running nodes are not moved between pool and general hosts, so the count
            # would no longer say where the cluster's GPUs come from.
            raise FailedPrecondition(
                "num_capacity_pool_gpus can change only before a scheduled cluster starts",
                param="num_capacity_pool_gpus",
            )
        cluster.num_capacity_pool_gpus = req.num_capacity_pool_gpus
    if req.num_preemptible_gpus is not None:
        if req.num_preemptible_gpus and cluster.cluster_type == ClusterType.SLURM:
            raise InvalidRequest(
                "preemptible GPUs are available on KUBERNETES clusters only",
                param="num_preemptible_gpus",
            )
        cluster.desired_preemptible_gpus = req.num_preemptible_gpus


def _extend(cluster: ClusterRow, end: datetime, now: datetime) -> None:
    if cluster.billing_type == BillingType.ON_DEMAND:
        raise InvalidRequest(
            "reservation_end_time applies to RESERVED or SCHEDULED_CAPACITY "
            "clusters, not ON_DEMAND",
            param="reservation_end_time",
        )
    start = cluster.reservation_start_time or now
    if end <= max(now, start):
        raise InvalidRequest(
            "reservation_end_time must be in the future and after the start",
            param="reservation_end_time",
        )
    cluster.reservation_end_time = end


def _scale(
    session: Session, cluster: ClusterRow, num_gpus: int, now: datetime, drain: timedelta
) -> None:
    """Scale-up claims hosts now (or preempts nodes to make room, 409 if even that cannot);
    scale-down drains nodes already marked for deletion first, then the newest."""
    previous = cluster.num_gpus
    if num_gpus > previous:
        quotas.check(session, cluster.project_id, num_gpus - previous)
    cluster.num_gpus = num_gpus
    cluster.num_capacity_pool_gpus = min(cluster.num_capacity_pool_gpus, num_gpus)
    started = cluster.phase != ClusterPhase.SCHEDULED
    if num_gpus > previous and started:
        claim_workers(session, cluster, now, drain=drain, strict=True)
    elif num_gpus < previous:
        keep = [w for w in live_workers(session, cluster.id) if not w.marked_for_deletion]
        surplus = len(keep) - num_gpus // GPUS_PER_NODE
        newest_first = sorted(keep, key=lambda w: (w.created_at, w.ordinal), reverse=True)
        for node in newest_first[: max(0, surplus)]:
            node.marked_for_deletion = True
            node.removal_reason = "scale_down"
            node.status = "Draining"
    record_event(
        session,
        object_type="cluster",
        object_id=cluster.id,
        kind="scaled",
        message=f"num_gpus {previous} -> {num_gpus}",
        at=now,
        scope=cluster_scope(cluster),
    )


def delete_cluster(session: Session, caller: Caller, cluster_id: str, *, now: datetime) -> str:
    """Start teardown; repeating it (an SDK retry) succeeds, also once the cluster is gone."""
    gone = session.get(ClusterRow, cluster_id)
    if gone is not None and gone.deleted_at is not None and caller.can_see(gone.project_id):
        return gone.id
    cluster = get_cluster(session, caller, cluster_id)
    if cluster.delete_requested_at is None:
        cluster.delete_requested_at = now
        cluster.step_state = None
        set_cluster_phase(session, cluster, ClusterPhase.DELETING, now)
        cluster.next_reconcile_at = now
    return cluster.id

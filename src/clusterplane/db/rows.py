"""ORM rows: the persisted model of tenancy, fleet, clusters, nodes, volumes and repairs.

Schema changes go through Alembic migrations only (`db/migrations/versions`); a test checks
that the migrated schema and these rows agree. Every datetime is aware UTC (`UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from clusterplane.db.types import UTCDateTime
from clusterplane.domain.remediation import TERMINAL


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class OrganizationRow(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128))
    slug: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime]
    # Remediation policy "Fully automatic" for every cluster of the project.
    auto_approve_remediations: Mapped[bool] = mapped_column(Boolean, default=False)


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime]


class MembershipRow(Base):
    __tablename__ = "memberships"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), default="member")


class ApiKeyRow(Base):
    """An API key: a salted hash of its secret, never the secret (services/access/auth.py).

    `lookup` finds an operator-chosen key (one without its id inside) by a keyed hash;
    keys the server issues carry their id and have none.
    """

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_lookup", "lookup", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    lookup: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(128), default="")
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None] = mapped_column(default=None)


class RegionRow(Base):
    """A region of the fleet with its driver catalogue, synced from the fleet file."""

    __tablename__ = "regions"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    driver_versions: Mapped[list[Any]]
    control_plane: Mapped[dict[str, Any]]
    network: Mapped[str] = mapped_column(String(64))
    # Control-plane VMs ever placed in the region; numbers their management addresses.
    control_plane_seq: Mapped[int] = mapped_column(Integer, default=0)
    # The last `clusters.booked_seq` handed out in this region.
    booking_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Room for shared volumes, in TiB (the fleet file's `storage_tib`).
    storage_capacity_tib: Mapped[int] = mapped_column(Integer, default=1024, server_default="1024")
    # The operator's policy (fleet file or settings): may one cluster span fabrics?
    allow_cross_fabric: Mapped[bool] = mapped_column(Boolean, default=False)


class HostRow(Base):
    __tablename__ = "hosts"
    __table_args__ = (
        Index("ix_hosts_pick", "region", "gpu_type", "state"),
        # Covers reads of a region's hosts of one GPU type by fabric, pool and state (the
        # GPU-type probe of every create: `fleet.offers_instance_type`). The capacity
        # check's counts are kept by the database instead (`serviceable_host_changes`).
        Index(
            "ix_hosts_capacity",
            "region",
            "gpu_type",
            "in_fleet_file",
            "fabric",
            "capacity_pool_id",
            "state",
        ),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    region: Mapped[str] = mapped_column(String(64))
    fabric: Mapped[str] = mapped_column(String(64))
    block: Mapped[str] = mapped_column(String(64))
    rack: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(32))
    num_gpus: Mapped[int] = mapped_column(Integer)
    num_cpu_cores: Mapped[int] = mapped_column(Integer)
    memory_gib: Mapped[float] = mapped_column(Float)
    ib_hca_count: Mapped[int] = mapped_column(Integer)
    ib_hca_type: Mapped[str] = mapped_column(String(64))
    nvswitch_count: Mapped[int] = mapped_column(Integer)
    nvswitch_type: Mapped[str] = mapped_column(String(64))
    ephemeral_storage: Mapped[str] = mapped_column(String(16))
    ip_address: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    in_fleet_file: Mapped[bool] = mapped_column(Boolean, default=True)
    cluster_id: Mapped[str | None] = mapped_column(String(64), index=True)
    node_row_id: Mapped[str | None] = mapped_column(String(64))
    # The capacity pool the operator put this host in (None: general capacity).
    capacity_pool_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Drained by the operator: keeps serving its cluster, is never handed out again.
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    # Who manages the host: the host driver the controllers call for it (`simulated`,
    # `agent`); see `providers.registry`.
    driver: Mapped[str] = mapped_column(String(32), default="simulated")
    updated_at: Mapped[datetime]


class ProjectQuotaRow(Base):
    """The operator's limits on what one project's live clusters and volumes may hold.

    None: no limit on standard GPUs; for preemptible GPUs and storage, None means the
    default share of each region (`CapacitySettings`)."""

    __tablename__ = "project_quotas"
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    max_gpus: Mapped[int | None] = mapped_column(Integer)
    max_preemptible_gpus: Mapped[int | None] = mapped_column(Integer, default=None)
    max_storage_tib: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime]


class CapacityPoolRow(Base):
    """Hosts the operator holds for one project or organisation over a time window."""

    __tablename__ = "capacity_pools"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(32))
    # Exactly one of the two owners is set.
    project_id: Mapped[str | None] = mapped_column(String(64))
    organization_id: Mapped[str | None] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


# The partial indexes' conditions; queries that use them repeat them word for word
# (SQLite uses a partial index only for a query whose WHERE holds its terms).
UNSTEADY_BOOKING = (
    "deleted_at IS NULL AND (reservation_end_time IS NOT NULL OR capacity_pool_id IS NOT NULL "
    "OR reservation_start_time IS NOT NULL)"
)
SCHEDULED_CLUSTER = "phase = 'CLUSTER_PHASE_SCHEDULED' AND deleted_at IS NULL"


class ClusterRow(Base):
    __tablename__ = "clusters"
    __table_args__ = (
        Index("ix_clusters_project_created", "project_id", "created_at"),
        # Due scans: `deleted_at IS NULL AND next_reconcile_at <= now`, in due order.
        Index("ix_clusters_due", "deleted_at", "next_reconcile_at"),
        # The capacity check's bookings other than the steady ones (migration 0018), and
        # the reservations still to start by booked fabric: few rows, not every cluster.
        Index(
            "ix_clusters_unsteady",
            "region",
            "gpu_type",
            sqlite_where=text(UNSTEADY_BOOKING),
            postgresql_where=text(UNSTEADY_BOOKING),
        ),
        Index(
            "ix_clusters_scheduled_fabrics",
            "region",
            "gpu_type",
            "booked_fabric",
            "num_gpus",
            sqlite_where=text(SCHEDULED_CLUSTER),
            postgresql_where=text(SCHEDULED_CLUSTER),
        ),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    organization_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    cluster_type: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(32))
    billing_type: Mapped[str] = mapped_column(String(32))
    phase: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(64))
    num_gpus: Mapped[int] = mapped_column(Integer)
    num_reserved_gpus: Mapped[int] = mapped_column(Integer, default=0)
    num_capacity_pool_gpus: Mapped[int] = mapped_column(Integer, default=0)
    capacity_pool_id: Mapped[str | None] = mapped_column(String(64))
    desired_preemptible_gpus: Mapped[int] = mapped_column(Integer, default=0)
    num_cpu_workers: Mapped[int] = mapped_column(Integer, default=0)
    cuda_version: Mapped[str] = mapped_column(String(32))
    nvidia_driver_version: Mapped[str] = mapped_column(String(32))
    nvidia_driver_version_id: Mapped[str] = mapped_column(String(128))
    os_image: Mapped[str] = mapped_column(String(64))
    duration_hours: Mapped[int | None] = mapped_column(Integer)
    reservation_start_time: Mapped[datetime | None]
    reservation_end_time: Mapped[datetime | None]
    install_traefik: Mapped[bool] = mapped_column(Boolean, default=False)
    slurm_shm_size_gib: Mapped[int | None] = mapped_column(Integer)
    slurm_image: Mapped[str | None] = mapped_column(String(256))
    auto_scale: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_scale_max_gpus: Mapped[int | None] = mapped_column(Integer)
    add_ons: Mapped[list[Any]]
    cluster_config: Mapped[dict[str, Any] | None]
    oidc_config: Mapped[dict[str, Any] | None]
    acceptance_tests_params: Mapped[dict[str, Any] | None]
    # The enabled add-ons and cluster_config the driver last applied (None: not yet).
    applied_config: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # The fabric a reservation's general hosts are booked in (None: not booked in one).
    booked_fabric: Mapped[str | None] = mapped_column(String(64), default=None)
    # The order bookings of its region were made in (None: before this was recorded).
    booked_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    api_server_url: Mapped[str] = mapped_column(String(256))
    credentials: Mapped[dict[str, Any] | None]
    kube_config: Mapped[str] = mapped_column(Text, default="")
    # The operator's SSH certificate policy (domain/ssh_policy.py); None: the defaults.
    ssh_policy: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    control_plane_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    # Remediation policy "Fully automatic" for this cluster (or its project's policy).
    auto_approve_remediations: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why automatic repair of this cluster is stopped (the unhealthy-share rule); None: not.
    remediation_paused_reason: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    # Per-step driver state of the cluster-level step in progress (see controllers/clusters).
    step_state: Mapped[dict[str, Any] | None]
    # The bring-up step this controller started (its phase and when), and why it failed;
    # the controller's own record, so it never reads the flavour's state.
    step_phase: Mapped[str | None] = mapped_column(String(64))
    step_started_at: Mapped[datetime | None]
    step_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_ready_at: Mapped[datetime | None]
    delete_requested_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)
    next_reconcile_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class ClusterPhaseTransitionRow(Base):
    __tablename__ = "cluster_phase_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id"), index=True)
    phase: Mapped[str] = mapped_column(String(64))
    transition_time: Mapped[datetime]


class ServiceableHostChangeRow(Base):
    """Serviceable hosts (in the fleet file, available or allocated) a region's GPU type
    gained or lost in a fabric and capacity pool (`pool` '': general capacity): a ledger
    the database's triggers append to (migration 0018), summed by group."""

    __tablename__ = "serviceable_host_changes"
    __table_args__ = (
        Index("ix_serviceable_host_changes_group", "region", "gpu_type", "fabric", "pool", "hosts"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(32))
    fabric: Mapped[str] = mapped_column(String(64))
    pool: Mapped[str] = mapped_column(String(64))
    hosts: Mapped[int] = mapped_column(Integer)


class SteadyBookingChangeRow(Base):
    """GPUs a region's steady bookings of a GPU type gained or lost (live clusters, not
    deleting, with no reservation times and no pool: on-demand clusters): a ledger the
    database's triggers append to (migration 0018), summed by group."""

    __tablename__ = "steady_booking_changes"
    __table_args__ = (Index("ix_steady_booking_changes_group", "region", "gpu_type", "gpus"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    region: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str] = mapped_column(String(32))
    gpus: Mapped[int] = mapped_column(Integer)


class ClusterRevisionRow(Base):
    """How many times what a cluster's response shows has changed (`revision`, bumped by
    the database's triggers: migration 0017), and the revision its stored document was
    rendered at (`rendered`)."""

    __tablename__ = "cluster_revisions"
    __table_args__ = (
        Index(
            "ix_cluster_revisions_behind",
            "cluster_id",
            sqlite_where=text("rendered <> revision"),
            postgresql_where=text("rendered <> revision"),
        ),
    )
    cluster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    rendered: Mapped[int] = mapped_column(Integer)


class ClusterDocumentRow(Base):
    """A cluster's response as rendered at `revision`, without its kube_config; it holds
    until `valid_until` (None: until the revision moves)."""

    __tablename__ = "cluster_documents"
    cluster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    valid_until: Mapped[datetime | None] = mapped_column(index=True)


class NodeRow(Base):
    """One instance of a cluster on one host, in one role; kept after deletion."""

    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    ordinal: Mapped[int] = mapped_column(Integer)
    node_name: Mapped[str] = mapped_column(String(128))
    instance_id: Mapped[str] = mapped_column(String(64), unique=True)
    host_id: Mapped[str | None] = mapped_column(String(64), index=True)
    host_name: Mapped[str] = mapped_column(String(128))
    phase: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    num_cpu_cores: Mapped[int] = mapped_column(Integer)
    num_gpus: Mapped[int] = mapped_column(Integer)
    memory_gib: Mapped[float] = mapped_column(Float)
    networks: Mapped[list[Any]]
    public_ipv4: Mapped[str | None] = mapped_column(String(64))
    slurm_worker_hostname: Mapped[str | None] = mapped_column(String(128))
    preemptible: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_remediation_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    marked_for_deletion: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why the node is leaving: "scale_down", "preempted", "replaced" or "evicted" (its host
    # goes back to the fleet) or "quarantined" (its host is held out of service, on
    # evidence against it); None while it serves.
    removal_reason: Mapped[str | None] = mapped_column(String(32))
    # Why the node was added: "bring_up", "scale_up" or "replacement" (of a repaired node).
    origin: Mapped[str] = mapped_column(String(16), default="bring_up")
    # A preempted node keeps serving until then (its drain window); None otherwise.
    drain_until: Mapped[datetime | None]
    # "healthy", or "unhealthy" while an open health signal holds it out of service.
    health: Mapped[str] = mapped_column(String(16), default="healthy")
    # Who cordoned the node ("clusterplane" when we did); only our own cordons are lifted.
    cordoned_by: Mapped[str | None] = mapped_column(String(64))
    provider_state: Mapped[dict[str, Any] | None]
    # The cluster flavour's opaque state of the node's membership (None: not a member).
    flavour_state: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class NodePhaseTransitionRow(Base):
    __tablename__ = "node_phase_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_row_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    phase: Mapped[str] = mapped_column(String(32))
    transition_time: Mapped[datetime]


class NodeLifecycleEventRow(Base):
    __tablename__ = "node_lifecycle_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id"), index=True)
    node_name: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime]


class VolumeRow(Base):
    __tablename__ = "volumes"
    __table_args__ = (Index("ix_volumes_project_created", "project_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(128))
    region: Mapped[str] = mapped_column(String(64))
    size_tib: Mapped[int] = mapped_column(Integer)
    provisioned_size_tib: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(32))
    is_lifecycle_independent: Mapped[bool] = mapped_column(Boolean, default=True)
    cluster_id: Mapped[str | None] = mapped_column(String(64), index=True)
    provider_state: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    delete_requested_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    next_reconcile_at: Mapped[datetime | None] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


# A node has at most one open remediation (services.health.remediations): unique among open rows.
_OPEN_REMEDIATION = text(
    "state NOT IN (" + ", ".join(f"'{state}'" for state in sorted(TERMINAL)) + ")"
)


class RemediationRow(Base):
    __tablename__ = "remediations"
    __table_args__ = (
        Index("ix_remediations_cluster_created", "cluster_id", "create_time"),
        Index(
            "uq_remediations_open_per_node",
            "node_row_id",
            unique=True,
            sqlite_where=_OPEN_REMEDIATION,
            postgresql_where=_OPEN_REMEDIATION,
        ),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cluster_id: Mapped[str] = mapped_column(ForeignKey("clusters.id"))
    node_row_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    instance_id: Mapped[str] = mapped_column(String(64), index=True)
    instance_name: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(128))
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    review_time: Mapped[datetime | None]
    review_comment: Mapped[str | None] = mapped_column(Text)
    create_time: Mapped[datetime]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    update_time: Mapped[datetime]
    error_message: Mapped[str | None] = mapped_column(Text)
    active_health_check_run_id: Mapped[str | None] = mapped_column(String(64))
    passive_health_check_event_id: Mapped[str | None] = mapped_column(String(64))
    # Execution (controllers/remediations): the node that replaces the repaired one, the
    # driver state of the step in progress, and the usual due time and lease.
    replacement_node_row_id: Mapped[str | None] = mapped_column(String(64))
    # The check that must pass before the repaired node serves again.
    verification_run_id: Mapped[str | None] = mapped_column(String(64))
    step_state: Mapped[dict[str, Any] | None]
    deleted_at: Mapped[datetime | None]
    next_reconcile_at: Mapped[datetime | None] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class HealthEventRow(Base):
    """A passive health signal from a host (or a failed active check), and what it caused."""

    __tablename__ = "health_events"
    __table_args__ = (
        Index("ix_health_events_host_open", "host_id", "resolved_at"),
        Index("ix_health_events_node", "node_row_id"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host_id: Mapped[str] = mapped_column(String(64))
    host_name: Mapped[str] = mapped_column(String(128))
    cluster_id: Mapped[str | None] = mapped_column(String(64), index=True)
    node_row_id: Mapped[str | None] = mapped_column(String(64))
    instance_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    code: Mapped[int | None] = mapped_column(Integer)
    gpu_index: Mapped[int | None] = mapped_column(Integer)
    alert_name: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(32))
    check_run_id: Mapped[str | None] = mapped_column(String(64))
    observed_at: Mapped[datetime]
    ingested_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    remediation_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Why no repair was proposed yet (cooldown, stop rule, opt-out); None once one was.
    held_reason: Mapped[str | None] = mapped_column(Text)
    deleted_at: Mapped[datetime | None]
    next_reconcile_at: Mapped[datetime | None] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class HealthCheckRunRow(Base):
    """One active check (DCGM, GPU burn, NCCL, IB bandwidth) on one host, and its evidence."""

    __tablename__ = "health_check_runs"
    __table_args__ = (Index("ix_health_check_runs_host", "host_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host_id: Mapped[str] = mapped_column(String(64))
    host_name: Mapped[str] = mapped_column(String(128))
    cluster_id: Mapped[str | None] = mapped_column(String(64), index=True)
    node_row_id: Mapped[str | None] = mapped_column(String(64))
    check: Mapped[str] = mapped_column(String(32))
    level: Mapped[int | None] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    result: Mapped[dict[str, Any] | None]
    message: Mapped[str] = mapped_column(Text, default="")
    remediation_id: Mapped[str | None] = mapped_column(String(64))
    # The host driver's opaque state of the running check (None until it started it).
    driver_state: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    next_reconcile_at: Mapped[datetime | None] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class IdempotencyRow(Base):
    """A committed POST, so a replay returns the original result instead of acting twice."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        Index("ix_idem_fingerprint", "api_key_id", "fingerprint"),
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_idem_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    api_key_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    fingerprint: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


# Events not yet fanned out to webhook endpoints (services/events/webhook_outbox.py).
_FANOUT_PENDING = text("fanout_pending")


class EventRow(Base):
    """The audit trail: one row per status change of any object, with whose it is.

    `project_id` is the project that sees the event (None: the operator only, such as a
    host's events); `cluster_id` and `node_row_id` say what it concerns, for filters.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_object", "object_type", "object_id"),
        Index("ix_events_project", "project_id", "id"),
        Index("ix_events_cluster", "cluster_id", "id"),
        Index("ix_events_node", "node_row_id", "id"),
        Index("ix_events_at", "at"),
        Index(
            "ix_events_fanout_pending",
            "id",
            sqlite_where=_FANOUT_PENDING,
            postgresql_where=_FANOUT_PENDING,
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    project_id: Mapped[str | None] = mapped_column(String(64), default=None)
    cluster_id: Mapped[str | None] = mapped_column(String(64), default=None)
    node_row_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # Not yet matched against webhook endpoints (the outbox's queue of new events).
    fanout_pending: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=text("false")
    )


class WebhookEndpointRow(Base):
    """An HTTPS receiver of events: a project's (its events) or the operator's (all).

    The signing secret is sealed at rest (`SecretBox`, context `webhook:<id>:secret`).
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_project", "project_id", "deleted_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # None: a fleet-wide endpoint of the operator, sent every event it selects.
    project_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    # Patterns of event kinds sent to it (domain/events.py).
    kinds: Mapped[list[Any]]
    description: Mapped[str] = mapped_column(String(256), default="")
    secret: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64))
    # Events not queued for it because its project's outbox was full.
    dropped: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class WebhookDeliveryRow(Base):
    """One event to send to one endpoint: the outbox row, its attempts and its outcome.

    Times are wall time. A pending delivery is due at `next_attempt_at`; the dispatcher
    leases it (as controllers lease rows) while an attempt is in flight.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at", "id"),
        Index("ix_webhook_deliveries_project", "project_id", "state"),
        Index("ix_webhook_deliveries_finished", "finished_at"),
        # Deliveries in flight (leased): what the per-endpoint and per-project bounds count.
        Index("ix_webhook_deliveries_leased", "lease_expires_at"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    # The endpoint's project (None: a fleet-wide endpoint), for per-project bounds.
    project_id: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    kind: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16))
    # Failed attempts since it was queued or last replayed: the backoff's exponent.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # The most recent attempts, oldest first: at, duration_ms, status_code, error.
    attempts: Mapped[list[Any]]
    replays: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]


class ServerStateRow(Base):
    """Small key/value facts of the installation (the fleet clock's high-water mark)."""

    __tablename__ = "server_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class JoinTokenRow(Base):
    """A one-time join token: only an HMAC of its secret (keyed by its own salt) is kept."""

    __tablename__ = "join_tokens"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    secret_hmac: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(64))
    fabric: Mapped[str | None] = mapped_column(String(64))
    block: Mapped[str | None] = mapped_column(String(64))
    rack: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # The host that enrolled with it: a token serves that one host only.
    used_at: Mapped[datetime | None]
    host_id: Mapped[str | None] = mapped_column(String(64))


class AgentHostRow(Base):
    """A host managed by a node agent: its key, what it reported, whether it is heard."""

    __tablename__ = "agent_hosts"
    __table_args__ = (Index("ix_agent_hosts_silence", "status", "last_seen_at"),)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    join_token_id: Mapped[str] = mapped_column(String(64))
    enrolled_at: Mapped[datetime]
    inventory: Mapped[dict[str, Any]]
    # "ready" while heard from; "unknown" once silent past the grace period.
    status: Mapped[str] = mapped_column(String(16))
    # Wall time of the last authenticated call (agents live on wall time, not fleet time).
    last_seen_at: Mapped[datetime]
    generation_applied: Mapped[int] = mapped_column(Integer, default=-1)
    phase: Mapped[str] = mapped_column(String(16), default="idle")
    report: Mapped[dict[str, Any] | None]
    # The host was taken out of placement because its agent went silent while idle.
    held_out: Mapped[bool] = mapped_column(Boolean, default=False)


class AgentNonceRow(Base):
    """Nonces of signed agent requests still inside the clock-skew window (replays fail)."""

    __tablename__ = "agent_nonces"
    host_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class HostAssignmentRow(Base):
    """A host's desired state for its agent, generation-numbered; secrets sealed at rest."""

    __tablename__ = "host_assignments"
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)
    cluster_id: Mapped[str | None] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]
    sealed_secrets: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime]


class AgentCheckRow(Base):
    """An active check a host's agent is asked to run (by run id), and what it reported.

    `state`: "requested" until the agent reports, then "done" (figures to judge) or
    "failed" (the check could not run, timed out or exited non-zero)."""

    __tablename__ = "agent_checks"
    __table_args__ = (Index("ix_agent_checks_host_state", "host_id", "state"),)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    level: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    figures: Mapped[dict[str, Any] | None]
    message: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class AgentHealthKeyRow(Base):
    """Which agent signals were ingested (by the agent's own key): each one becomes one event."""

    __tablename__ = "agent_health_keys"
    host_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]

"""Everything a Cluster response shows, loaded in a fixed number of queries for any list.

`load_details` takes cluster ids and returns one `ClusterDetail` per live cluster among
them, with nodes (and their hosts' facts), phase histories, volumes, lifecycle events and
latest remediations gathered by bulk queries: seven per batch of up to `BATCH` clusters,
however many nodes they have (no per-cluster or per-node queries), in stable order.

This is the hottest read path (GET of a cluster is what clients poll, and the
Together-compatible list is unpaginated, so a list is every cluster of a project), so it
reads plain tuples through statements prepared once (`db/prepared.py`): no ORM objects,
no SQLAlchemy result machinery, and none of the columns no response shows (credentials,
driver state). Rows come back as the named tuples below, whose field names are those of
the ORM rows; their fields are the SELECT lists, so the two cannot drift apart. The list
endpoint reads a long list a page at a time (api/routers/clusters.py), so memory stays
bounded by a page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    JSON,
    BindParameter,
    ColumnElement,
    DateTime,
    Select,
    String,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    type_coerce,
)

from clusterplane.db.prepared import Prepared, Reader
from clusterplane.db.rows import (
    ClusterPhaseTransitionRow,
    ClusterRow,
    HostRow,
    NodeLifecycleEventRow,
    NodePhaseTransitionRow,
    NodeRow,
    RemediationRow,
    VolumeRow,
)
from clusterplane.domain.enums import NodeRole
from clusterplane.errors import NotFound
from clusterplane.services.access.auth import Caller

EVENT_RETENTION = timedelta(hours=72)
BATCH = 250  # clusters per round of bulk queries (keeps id lists and memory small)


class ClusterView(NamedTuple):
    """The columns of a cluster a response shows; never its credentials or driver state."""

    id: str
    project_id: str
    organization_id: str
    name: str
    cluster_type: str
    region: str
    gpu_type: str
    billing_type: str
    phase: str
    status: str
    num_gpus: int
    num_reserved_gpus: int
    num_capacity_pool_gpus: int
    capacity_pool_id: str | None
    desired_preemptible_gpus: int
    num_cpu_workers: int
    cuda_version: str
    nvidia_driver_version: str
    nvidia_driver_version_id: str
    os_image: str
    duration_hours: int | None
    reservation_start_time: datetime | None
    reservation_end_time: datetime | None
    install_traefik: bool
    slurm_shm_size_gib: int | None
    add_ons: list[Any]
    cluster_config: dict[str, Any] | None
    oidc_config: dict[str, Any] | None
    applied_config: dict[str, Any] | None
    kube_config: str
    control_plane_ready: bool
    created_at: datetime
    first_ready_at: datetime | None
    deleted_at: datetime | None


class NodeView(NamedTuple):
    """A node's presented columns and its host's facts (None where it has no host, as
    control-plane VMs)."""

    id: str
    cluster_id: str
    role: str
    ordinal: int
    node_name: str
    instance_id: str
    host_name: str
    status: str
    num_cpu_cores: int
    num_gpus: int
    memory_gib: float
    networks: list[Any]
    public_ipv4: str | None
    slurm_worker_hostname: str | None
    preemptible: bool
    auto_remediation_enabled: bool
    marked_for_deletion: bool
    deleted_at: datetime | None
    ephemeral_storage: str | None
    ib_hca_count: int | None
    ib_hca_type: str | None
    nvswitch_count: int | None
    nvswitch_type: str | None


class VolumeView(NamedTuple):
    id: str
    cluster_id: str | None
    name: str
    size_tib: int
    status: str


class RemediationView(NamedTuple):
    """What a node's `latest_remediation` shows."""

    id: str
    cluster_id: str
    node_row_id: str
    instance_id: str
    mode: str
    state: str
    trigger: str
    instance_name: str
    reason: str | None
    requested_by: str
    reviewed_by: str | None
    review_time: datetime | None
    review_comment: str | None
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime
    error_message: str | None
    active_health_check_run_id: str | None
    passive_health_check_event_id: str | None


class LifecycleEventView(NamedTuple):
    cluster_id: str
    node_name: str
    reason: str
    message: str
    timestamp: datetime  # naive UTC


# A phase history entry: (phase, transition_time as naive UTC).
Transition = tuple[str, datetime]


@dataclass
class NodeDetail:
    row: NodeView
    transitions: list[Transition] = field(default_factory=list)
    latest_remediation: RemediationView | None = None


@dataclass
class ClusterDetail:
    row: ClusterView
    transitions: list[Transition] = field(default_factory=list)
    control_plane: list[NodeDetail] = field(default_factory=list)
    workers: list[NodeDetail] = field(default_factory=list)
    deleted_workers: list[NodeDetail] = field(default_factory=list)
    volumes: list[VolumeView] = field(default_factory=list)
    lifecycle_events: list[LifecycleEventView] = field(default_factory=list)


def get_detail(reader: Reader, caller: Caller, cluster_id: str, *, now: datetime) -> ClusterDetail:
    """One live cluster the caller may see, ready to present; NotFound otherwise."""
    details = load_details(reader, [cluster_id], now=now)
    if not details or not caller.can_see(details[0].row.project_id):
        raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
    return details[0]


def list_ids(reader: Reader, caller: Caller, project_id: str | None) -> list[str]:
    """Ids of the live clusters of a project the caller sees, oldest first (stable order)."""
    scope = caller.project_id if project_id is None else project_id
    if not caller.can_see(scope):
        return []
    return [cluster_id for (cluster_id,) in reader.all(_PROJECT_IDS, project_id=scope)]


def load_details(reader: Reader, ids: Sequence[str], *, now: datetime) -> list[ClusterDetail]:
    """Details of the live clusters among `ids`, in the order of `ids`."""
    found: list[ClusterDetail] = []
    queries = _for(reader)
    for start in range(0, len(ids), BATCH):
        chunk = list(ids[start : start + BATCH])
        rows = {row.id: row for row in reader.all(queries.clusters, ids=chunk)}
        details = {i: ClusterDetail(rows[i]) for i in chunk if i in rows}
        live = [i for i, d in details.items() if d.row.deleted_at is None]
        if live:
            _load_cluster_parts(reader, queries, details, live, now)
            _load_nodes(reader, queries, details, live)
        found += (details[i] for i in live)
    return found


# The statements are prepared once (building a SELECT of thirty columns costs more than
# running it). Each comes in two forms, both with the ids as one bound value, so the SQL
# text never changes with their number: `IN (SELECT value FROM json_each(:ids))` with a
# JSON array for SQLite, and `= ANY(:ids)` with an array for PostgreSQL. Phase-history
# timestamps are read as the database's naive UTC (`naive`), skipping the per-value
# conversion to aware datetimes: they are only ever encoded, and the encoder writes naive
# values as UTC (cluster_wire.JSON_OPTIONS).
_CPT = ClusterPhaseTransitionRow
_NPT = NodePhaseTransitionRow
_EV = NodeLifecycleEventRow
_HOST_FACTS = frozenset(
    {"ephemeral_storage", "ib_hca_count", "ib_hca_type", "nvswitch_count", "nvswitch_type"}
)


def _columns(row_type: Any, view: type[tuple[Any, ...]]) -> list[Any]:
    fields: tuple[str, ...] = view._fields  # type: ignore[attr-defined]
    return [getattr(HostRow if f in _HOST_FACTS else row_type, f) for f in fields]


def naive(column: Any) -> Any:
    """The column read as the database's naive UTC, without per-value conversion."""
    return type_coerce(column, DateTime).label(column.key)


@dataclass(frozen=True)
class _Statements:
    clusters: Prepared[ClusterView]
    cluster_phases: Prepared[tuple[str, str, datetime]]
    events: Prepared[LifecycleEventView]
    volumes: Prepared[VolumeView]
    nodes: Prepared[NodeView]
    node_phases: Prepared[tuple[str, str, datetime]]
    remediations: Prepared[RemediationView]


def _statements(one_of: Callable[[Any], ColumnElement[bool]]) -> _Statements:
    events: Select[Any] = (
        select(*_columns(_EV, LifecycleEventView)[:-1], naive(_EV.timestamp))
        .where(one_of(_EV.cluster_id), _EV.timestamp >= bindparam("since"))
        .order_by(_EV.id)
    )
    return _Statements(
        clusters=Prepared(
            select(*_columns(ClusterRow, ClusterView)).where(one_of(ClusterRow.id)), ClusterView
        ),
        cluster_phases=Prepared(
            select(_CPT.cluster_id, _CPT.phase, naive(_CPT.transition_time))
            .where(one_of(_CPT.cluster_id))
            .order_by(_CPT.id),
            tuple,
        ),
        events=Prepared(events, LifecycleEventView),
        volumes=Prepared(
            select(*_columns(VolumeRow, VolumeView))
            .where(one_of(VolumeRow.cluster_id), VolumeRow.deleted_at.is_(None))
            .order_by(VolumeRow.created_at),
            VolumeView,
        ),
        nodes=Prepared(
            select(*_columns(NodeRow, NodeView))
            .outerjoin(HostRow, HostRow.id == NodeRow.host_id)
            .where(one_of(NodeRow.cluster_id))
            .order_by(NodeRow.role, NodeRow.ordinal),
            NodeView,
        ),
        node_phases=Prepared(
            select(_NPT.node_row_id, _NPT.phase, naive(_NPT.transition_time))
            .join(NodeRow, NodeRow.id == _NPT.node_row_id)
            .where(one_of(NodeRow.cluster_id))
            .order_by(_NPT.id),
            tuple,
        ),
        remediations=Prepared(
            select(*_columns(RemediationRow, RemediationView))
            .where(one_of(RemediationRow.cluster_id))
            .order_by(RemediationRow.create_time, RemediationRow.id),
            RemediationView,
        ),
    )


_ARRAY: BindParameter[Any] = bindparam("ids", type_=ARRAY(String))
_JSON_LIST: Select[Any] = select(literal_column("value")).select_from(
    func.json_each(bindparam("ids", type_=JSON))
)
# `column` is one of the ids bound as `ids`, per dialect.
ONE_OF: dict[str, Callable[[Any], ColumnElement[bool]]] = {
    "postgresql": lambda column: column == any_(_ARRAY),
    "sqlite": lambda column: column.in_(_JSON_LIST.scalar_subquery()),
}
_BY_DIALECT = {dialect: _statements(one_of) for dialect, one_of in ONE_OF.items()}
_PROJECT_IDS: Prepared[tuple[str]] = Prepared(
    select(ClusterRow.id)
    .where(ClusterRow.project_id == bindparam("project_id"), ClusterRow.deleted_at.is_(None))
    .order_by(ClusterRow.created_at, ClusterRow.id),
    tuple,
)


def _for(reader: Reader) -> _Statements:
    return _BY_DIALECT.get(reader.dialect.name, _BY_DIALECT["sqlite"])


def _load_cluster_parts(
    reader: Reader,
    queries: _Statements,
    details: dict[str, ClusterDetail],
    chunk: list[str],
    now: datetime,
) -> None:
    for cluster_id, phase, at in reader.all(queries.cluster_phases, ids=chunk):
        details[cluster_id].transitions.append((phase, at))
    since = now - EVENT_RETENTION
    for event in reader.all(queries.events, ids=chunk, since=since):
        details[event.cluster_id].lifecycle_events.append(event)
    for volume in reader.all(queries.volumes, ids=chunk):
        if volume.cluster_id is not None:
            details[volume.cluster_id].volumes.append(volume)


def _load_nodes(
    reader: Reader, queries: _Statements, details: dict[str, ClusterDetail], chunk: list[str]
) -> None:
    nodes = reader.all(queries.nodes, ids=chunk)
    if not nodes:
        return
    transitions: dict[str, list[Transition]] = defaultdict(list)
    for node_row_id, phase, at in reader.all(queries.node_phases, ids=chunk):
        transitions[node_row_id].append((phase, at))
    latest: dict[str, RemediationView] = {}
    for remediation in reader.all(queries.remediations, ids=chunk):
        latest[remediation.node_row_id] = remediation
    control_plane = NodeRole.CONTROL_PLANE
    for node in nodes:
        view = NodeDetail(node, transitions[node.id], latest.get(node.id))
        detail = details[node.cluster_id]
        if node.role == control_plane:
            if node.deleted_at is None:
                detail.control_plane.append(view)
        elif node.deleted_at is None:
            detail.workers.append(view)
        else:
            detail.deleted_workers.append(view)

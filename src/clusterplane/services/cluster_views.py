"""Everything a Cluster response shows, loaded in a fixed number of queries for any list.

`load_details` takes clusters (ids, or rows carrying the presented columns) and returns one
`ClusterDetail` each, with nodes (and their hosts' facts), phase histories, volumes,
lifecycle events and latest remediations gathered by bulk queries: seven per batch of up
to `BATCH` clusters, however many nodes they have (no per-cluster or per-node queries), in
stable order.

This is the hottest read path (the Together-compatible list is unpaginated, so a list is
every cluster of a project), so it reads plain column tuples, not ORM objects: no identity
map, no instrumented attributes, and none of the columns no response shows (credentials,
driver state). A `ClusterDetail.row` is a SQLAlchemy `Row` whose attribute names are those
of `ClusterRow`; a node's is a `Row` of `NodeRow` columns plus its host's facts. The list
endpoint reads a long list a page at a time (api/routers/clusters.py), so memory stays
bounded by a page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

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
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

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
from clusterplane.services.auth import Caller

EVENT_RETENTION = timedelta(hours=72)
BATCH = 250  # clusters per round of bulk queries (keeps IN lists and memory small)

# The columns a Cluster response shows; never the credentials or the driver's state.
CLUSTER_COLUMNS = (
    ClusterRow.id,
    ClusterRow.project_id,
    ClusterRow.organization_id,
    ClusterRow.name,
    ClusterRow.cluster_type,
    ClusterRow.region,
    ClusterRow.gpu_type,
    ClusterRow.billing_type,
    ClusterRow.phase,
    ClusterRow.status,
    ClusterRow.num_gpus,
    ClusterRow.num_reserved_gpus,
    ClusterRow.num_capacity_pool_gpus,
    ClusterRow.capacity_pool_id,
    ClusterRow.desired_preemptible_gpus,
    ClusterRow.num_cpu_workers,
    ClusterRow.cuda_version,
    ClusterRow.nvidia_driver_version,
    ClusterRow.nvidia_driver_version_id,
    ClusterRow.os_image,
    ClusterRow.duration_hours,
    ClusterRow.reservation_start_time,
    ClusterRow.reservation_end_time,
    ClusterRow.install_traefik,
    ClusterRow.slurm_shm_size_gib,
    ClusterRow.add_ons,
    ClusterRow.cluster_config,
    ClusterRow.oidc_config,
    ClusterRow.applied_config,
    ClusterRow.kube_config,
    ClusterRow.control_plane_ready,
    ClusterRow.created_at,
    ClusterRow.first_ready_at,
    ClusterRow.deleted_at,
)
NODE_COLUMNS = (
    NodeRow.id,
    NodeRow.cluster_id,
    NodeRow.role,
    NodeRow.ordinal,
    NodeRow.node_name,
    NodeRow.instance_id,
    NodeRow.host_name,
    NodeRow.status,
    NodeRow.num_cpu_cores,
    NodeRow.num_gpus,
    NodeRow.memory_gib,
    NodeRow.networks,
    NodeRow.public_ipv4,
    NodeRow.slurm_worker_hostname,
    NodeRow.preemptible,
    NodeRow.auto_remediation_enabled,
    NodeRow.marked_for_deletion,
    NodeRow.deleted_at,
    # The host's facts (None where the node has no host, as control-plane VMs).
    HostRow.ephemeral_storage,
    HostRow.ib_hca_count,
    HostRow.ib_hca_type,
    HostRow.nvswitch_count,
    HostRow.nvswitch_type,
)
# What a Cluster response shows of an attached volume and of a node's latest remediation.
VOLUME_COLUMNS: tuple[Any, ...] = (
    VolumeRow.id,
    VolumeRow.cluster_id,
    VolumeRow.name,
    VolumeRow.size_tib,
    VolumeRow.status,
)
REMEDIATION_COLUMNS: tuple[Any, ...] = (
    RemediationRow.id,
    RemediationRow.cluster_id,
    RemediationRow.node_row_id,
    RemediationRow.instance_id,
    RemediationRow.mode,
    RemediationRow.state,
    RemediationRow.trigger,
    RemediationRow.instance_name,
    RemediationRow.reason,
    RemediationRow.requested_by,
    RemediationRow.reviewed_by,
    RemediationRow.review_time,
    RemediationRow.review_comment,
    RemediationRow.create_time,
    RemediationRow.start_time,
    RemediationRow.end_time,
    RemediationRow.update_time,
    RemediationRow.error_message,
    RemediationRow.active_health_check_run_id,
    RemediationRow.passive_health_check_event_id,
)


# A SQLAlchemy `Row` read by attribute name; typed loosely (rows of several shapes).
ColumnRow = Any
# A phase history entry: (phase, transition_time as naive UTC).
Transition = tuple[str, datetime]


@dataclass
class NodeDetail:
    row: ColumnRow  # NODE_COLUMNS
    transitions: list[Transition] = field(default_factory=list)
    latest_remediation: ColumnRow | None = None  # REMEDIATION_COLUMNS


@dataclass
class ClusterDetail:
    row: ColumnRow  # CLUSTER_COLUMNS, or a ClusterRow: the same attribute names
    transitions: list[Transition] = field(default_factory=list)
    control_plane: list[NodeDetail] = field(default_factory=list)
    workers: list[NodeDetail] = field(default_factory=list)
    deleted_workers: list[NodeDetail] = field(default_factory=list)
    volumes: list[ColumnRow] = field(default_factory=list)  # VOLUME_COLUMNS
    lifecycle_events: list[ColumnRow] = field(default_factory=list)


def cluster_rows(session: Session, cluster_ids: Sequence[str]) -> list[ColumnRow]:
    """The presented columns of these clusters, in the order of `cluster_ids`."""
    if not cluster_ids:
        return []
    conn = _connection(session)
    query = _for(conn).clusters
    found = {row.id: row for row in conn.execute(query, {"ids": list(cluster_ids)}).all()}
    return [found[i] for i in cluster_ids if i in found]


def get_detail(
    session: Session, caller: Caller, cluster_id: str, *, now: datetime
) -> ClusterDetail:
    """One live cluster the caller may see, ready to present; NotFound otherwise."""
    rows = cluster_rows(session, [cluster_id])
    if not rows or rows[0].deleted_at is not None or not caller.can_see(rows[0].project_id):
        raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
    return load_details(session, rows, now=now)[0]


def load_details(
    session: Session, clusters: Sequence[Any], *, now: datetime
) -> list[ClusterDetail]:
    """Details of `clusters` (rows with the presented columns), in their order."""
    details = {c.id: ClusterDetail(row=c) for c in clusters}
    ids = list(details)
    conn = _connection(session)
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        _load_cluster_parts(conn, details, chunk, now)
        _load_nodes(conn, details, chunk)
    return [details[c.id] for c in clusters]


def _connection(session: Session) -> Connection:
    """The session's connection, for plain-column reads that skip the ORM's row handling;
    pending ORM changes are flushed first, so a create or update reads what it wrote."""
    session.flush()
    return session.connection()


# The statements are built once: constructing a SELECT of thirty columns costs more than
# running it, and a reused statement also skips the compiled-cache adaptation. Each comes
# in two forms, both with the ids as one bound value, so the SQL text never changes with
# their number (no per-call rendering of an expanding `IN`, and the driver's prepared
# statement is reused): `IN (SELECT value FROM json_each(:ids))` with a JSON array for
# SQLite, and `= ANY(:ids)` with an array for PostgreSQL. Phase-history timestamps are
# read as the database's naive UTC (`_naive`), skipping the per-value conversion to aware
# datetimes: they are only ever encoded, and the encoder writes naive values as UTC
# (presenters.JSON_OPTIONS).
_CPT = ClusterPhaseTransitionRow
_NPT = NodePhaseTransitionRow
_EV = NodeLifecycleEventRow


def _naive(column: Any) -> Any:
    return type_coerce(column, DateTime).label(column.key)


@dataclass(frozen=True)
class _Statements:
    clusters: Select[Any]
    cluster_phases: Select[Any]
    events: Select[Any]
    volumes: Select[Any]
    nodes: Select[Any]
    node_phases: Select[Any]
    remediations: Select[Any]


def _statements(one_of: Callable[[Any], ColumnElement[bool]]) -> _Statements:
    return _Statements(
        clusters=select(*CLUSTER_COLUMNS).where(one_of(ClusterRow.id)),
        cluster_phases=select(_CPT.cluster_id, _CPT.phase, _naive(_CPT.transition_time))
        .where(one_of(_CPT.cluster_id))
        .order_by(_CPT.id),
        events=select(_EV.cluster_id, _EV.node_name, _EV.reason, _EV.message, _naive(_EV.timestamp))
        .where(one_of(_EV.cluster_id), _EV.timestamp >= bindparam("since"))
        .order_by(_EV.id),
        volumes=select(*VOLUME_COLUMNS)
        .where(one_of(VolumeRow.cluster_id), VolumeRow.deleted_at.is_(None))
        .order_by(VolumeRow.created_at),
        nodes=select(*NODE_COLUMNS)
        .outerjoin(HostRow, HostRow.id == NodeRow.host_id)
        .where(one_of(NodeRow.cluster_id))
        .order_by(NodeRow.role, NodeRow.ordinal),
        node_phases=select(_NPT.node_row_id, _NPT.phase, _naive(_NPT.transition_time))
        .join(NodeRow, NodeRow.id == _NPT.node_row_id)
        .where(one_of(NodeRow.cluster_id))
        .order_by(_NPT.id),
        remediations=select(*REMEDIATION_COLUMNS)
        .where(one_of(RemediationRow.cluster_id))
        .order_by(RemediationRow.create_time, RemediationRow.id),
    )


_ARRAY: BindParameter[Any] = bindparam("ids", type_=ARRAY(String))
_JSON_LIST: Select[Any] = select(literal_column("value")).select_from(
    func.json_each(bindparam("ids", type_=JSON))
)
_BY_DIALECT = {
    "postgresql": _statements(lambda column: column == any_(_ARRAY)),
    "sqlite": _statements(lambda column: column.in_(_JSON_LIST.scalar_subquery())),
}


def _for(conn: Connection) -> _Statements:
    return _BY_DIALECT.get(conn.dialect.name, _BY_DIALECT["sqlite"])


def _load_cluster_parts(
    conn: Connection,
    details: dict[str, ClusterDetail],
    chunk: list[str],
    now: datetime,
) -> None:
    queries = _for(conn)
    for cluster_id, phase, at in conn.execute(queries.cluster_phases, {"ids": chunk}).all():
        details[cluster_id].transitions.append((phase, at))
    since = now - EVENT_RETENTION
    for event in conn.execute(queries.events, {"ids": chunk, "since": since}).all():
        details[event.cluster_id].lifecycle_events.append(event)
    for volume in conn.execute(queries.volumes, {"ids": chunk}).all():
        if volume.cluster_id is not None:
            details[volume.cluster_id].volumes.append(volume)


def _load_nodes(conn: Connection, details: dict[str, ClusterDetail], chunk: list[str]) -> None:
    queries = _for(conn)
    nodes = conn.execute(queries.nodes, {"ids": chunk}).all()
    if not nodes:
        return
    transitions: dict[str, list[Transition]] = defaultdict(list)
    for node_row_id, phase, at in conn.execute(queries.node_phases, {"ids": chunk}).all():
        transitions[node_row_id].append((phase, at))
    latest: dict[str, ColumnRow] = {}
    for remediation in conn.execute(queries.remediations, {"ids": chunk}).all():
        latest[remediation.node_row_id] = remediation
    for node in nodes:
        view = NodeDetail(
            row=node, transitions=transitions[node.id], latest_remediation=latest.get(node.id)
        )
        detail = details[node.cluster_id]
        if node.role == NodeRole.CONTROL_PLANE:
            if node.deleted_at is None:
                detail.control_plane.append(view)
        elif node.deleted_at is None:
            detail.workers.append(view)
        else:
            detail.deleted_workers.append(view)

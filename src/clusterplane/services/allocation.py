"""Handing fleet hosts to clusters and creating the node rows that serve on them.

Allocation is one conditional UPDATE per batch (`state = 'available'` in the WHERE clause):
if another writer took any chosen host first, the row count comes up short and the whole
request fails before commit, so a host can never serve two clusters and a refused request
leaves nothing half-allocated. Placement decides on an index kept between requests
(`services/placement_cache.py`); only `available` hosts that are not draining are offered
or claimed, and the region's policy says whether a cluster may span fabrics.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, HostRow, NodePhaseTransitionRow, NodeRow, RegionRow
from clusterplane.domain.enums import ClusterType, HostState, NodePhase, NodeRole
from clusterplane.domain.placement import FreeHost, PlacementIndex
from clusterplane.errors import CapacityUnavailable
from clusterplane.services import placement_cache
from clusterplane.services.ids import new_uuid

GPUS_PER_NODE = 8
CONTROL_PLANE_NETWORK = ipaddress.ip_network("100.64.0.0/10")


def free_hosts(session: Session, *, region: str, gpu_type: str) -> list[FreeHost]:
    """The hosts placement may choose from, as plain topology facts (one light query,
    not ORM rows: the fleet can hold thousands of them)."""
    rows = session.execute(
        select(HostRow.id, HostRow.name, HostRow.fabric, HostRow.block, HostRow.rack).where(
            HostRow.region == region,
            HostRow.gpu_type == gpu_type,
            HostRow.state == HostState.AVAILABLE,
            HostRow.draining.is_(False),
            HostRow.in_fleet_file.is_(True),
            HostRow.cluster_id.is_(None),
            # Pool hosts are claimed only through services/claims.py, for their pool.
            HostRow.capacity_pool_id.is_(None),
        )
    ).all()
    return [
        FreeHost(host_id=host_id, name=name, fabric=fabric, block=block, rack=rack)
        for host_id, name, fabric, block, rack in rows
    ]


def unplaceable_counts(session: Session, *, region: str, gpu_type: str) -> dict[str, int]:
    """Hosts of the region and GPU type placement may not choose, by reason."""
    rows = session.execute(
        select(HostRow.state, HostRow.draining, func.count())
        .where(HostRow.region == region, HostRow.gpu_type == gpu_type)
        .group_by(HostRow.state, HostRow.draining)
    ).all()
    counts: dict[str, int] = {}
    for state, draining, n in rows:
        if state == HostState.AVAILABLE and not draining:
            continue  # placeable: the free ones are in the index itself
        why = "draining" if draining and state == HostState.AVAILABLE else str(state)
        counts[why] = counts.get(why, 0) + int(n)
    return counts


def placement_index(session: Session, *, region: str, gpu_type: str, full: bool) -> PlacementIndex:
    """A fresh index of the free hosts; `full` also counts the unplaceable ones."""
    row = session.get(RegionRow, region)
    return PlacementIndex(
        free_hosts(session, region=region, gpu_type=gpu_type),
        allow_cross_fabric=bool(row is not None and row.allow_cross_fabric),
        not_placeable=(
            unplaceable_counts(session, region=region, gpu_type=gpu_type) if full else None
        ),
    )


CLAIM_ATTEMPTS = 5

# Built once: placement commits run hundreds of times a second, and building a statement
# costs more than SQLite takes to run it. The claim hands back the claimed rows
# (UPDATE ... RETURNING, SQLite 3.35+ and PostgreSQL), so no second read is needed.
_CLAIM = (
    update(HostRow)
    .where(
        HostRow.id.in_(bindparam("ids", expanding=True)),
        HostRow.state == HostState.AVAILABLE,
        HostRow.draining.is_(False),
        HostRow.cluster_id.is_(None),
    )
    .values(state=HostState.ALLOCATED, cluster_id=bindparam("cluster"))
    .returning(HostRow)
    .execution_options(synchronize_session=False, populate_existing=True)
)
_UNDO = (
    update(HostRow)
    .where(
        HostRow.id.in_(bindparam("ids", expanding=True)),
        HostRow.cluster_id == bindparam("cluster"),
        HostRow.node_row_id.is_(None),
    )
    .values(state=HostState.AVAILABLE, cluster_id=None)
)


def allocate_hosts(
    session: Session, cluster: ClusterRow, count: int, *, existing: Sequence[HostRow] = ()
) -> list[HostRow]:
    """Choose and claim `count` hosts for `cluster`, near its `existing` hosts if any.

    If a concurrent request claimed one of the chosen hosts first (another replica, or
    on PostgreSQL, where writers do not queue as on SQLite), the partial claim is undone
    and placement runs again on a fresh read of what is free; CapacityUnavailable only
    when the fleet really is full.
    """
    if count <= 0:
        return []
    cache = placement_cache.for_session(session)
    key = (cluster.region, cluster.gpu_type)

    def load(full: bool) -> PlacementIndex:
        return placement_index(session, region=cluster.region, gpu_type=cluster.gpu_type, full=full)

    def decide(index: PlacementIndex) -> tuple[str, ...]:
        return _place(index, cluster, count, existing)

    for attempt in range(CLAIM_ATTEMPTS):
        chosen = cache.reserve(session, key, decide, load, fresh=attempt > 0)
        params = {"ids": list(chosen), "cluster": cluster.id}
        hosts = session.scalars(_CLAIM, params).all()
        if len(hosts) == len(chosen):
            order = {host_id: index for index, host_id in enumerate(chosen)}
            return sorted(hosts, key=lambda h: order[h.id])
        cache.forget(session, key)
        session.connection().execute(_UNDO, params)
    raise CapacityUnavailable(
        "hosts kept being taken by concurrent requests; try again", code="conflict"
    )


def _place(
    index: PlacementIndex, cluster: ClusterRow, count: int, existing: Sequence[HostRow]
) -> tuple[str, ...]:
    return index.choose_near(
        count,
        fabrics={h.fabric for h in existing},
        blocks={h.block for h in existing},
        racks={h.rack for h in existing},
        region=cluster.region,
        gpu_type=cluster.gpu_type,
    )


def release_host(
    session: Session, node: NodeRow, cluster_id: str, now: datetime, *, quarantine: bool = False
) -> None:
    """Take a terminated node's host back: to the fleet, or out of service (`quarantine`).

    Only a host still held by this cluster for this node is touched: a host that already
    serves the node's replacement stays where it is.
    """
    if node.host_id is None:
        return
    host = session.get(HostRow, node.host_id)
    if host is None or host.cluster_id != cluster_id:
        return
    if host.node_row_id not in (None, node.id):
        return
    host.cluster_id = None
    host.node_row_id = None
    if quarantine:
        host.state = HostState.QUARANTINED
    else:
        host.state = HostState.AVAILABLE if host.in_fleet_file else HostState.OFFLINE
    host.updated_at = now
    if host.state == HostState.AVAILABLE and not host.draining:
        placement_cache.for_session(session).put_back(
            (host.region, host.gpu_type),
            [FreeHost(host.id, host.name, host.fabric, host.block, host.rack)],
        )


def _new_node(
    cluster: ClusterRow, role: NodeRole, ordinal: int, now: datetime, **facts: Any
) -> NodeRow:
    return NodeRow(
        id=new_uuid(),
        cluster_id=cluster.id,
        role=role,
        ordinal=ordinal,
        instance_id=new_uuid(),
        phase=NodePhase.PENDING,
        status="Pending",
        public_ipv4=None,
        preemptible=False,
        auto_remediation_enabled=True,
        marked_for_deletion=False,
        provider_state=None,
        created_at=now,
        deleted_at=None,
        **facts,
    )


def next_ordinal(session: Session, cluster_id: str) -> int:
    """The ordinal a cluster's next GPU worker gets (one past every worker it ever had)."""
    ordinals = session.scalars(
        select(NodeRow.ordinal).where(
            NodeRow.cluster_id == cluster_id, NodeRow.role == NodeRole.GPU_WORKER
        )
    )
    return 1 + max(ordinals, default=-1)


def add_worker_nodes(
    session: Session,
    cluster: ClusterRow,
    hosts: Sequence[HostRow],
    first_ordinal: int,
    now: datetime,
    *,
    origin: str = "bring_up",
) -> list[NodeRow]:
    region = session.get(RegionRow, cluster.region)
    prefix = ipaddress.ip_network(region.network).prefixlen if region is not None else 32
    nodes = []
    short = cluster.id[:5]
    for offset, host in enumerate(hosts):
        ordinal = first_ordinal + offset
        node = _new_node(
            cluster,
            NodeRole.GPU_WORKER,
            ordinal,
            now,
            node_name=f"gpu-dp-{short}-{ordinal}",
            host_id=host.id,
            host_name=host.name,
            num_cpu_cores=host.num_cpu_cores,
            num_gpus=host.num_gpus,
            memory_gib=host.memory_gib,
            networks=[f"{host.ip_address}/{prefix}"],
            slurm_worker_hostname=(
                f"worker-{ordinal}.slurm-compute.slurm"
                if cluster.cluster_type == ClusterType.SLURM
                else None
            ),
        )
        node.origin = origin
        session.add(node)
        host.node_row_id = node.id
        nodes.append(node)
    session.flush()
    for node in nodes:
        session.add(
            NodePhaseTransitionRow(
                node_row_id=node.id, phase=NodePhase.PENDING, transition_time=now
            )
        )
    return nodes


def add_control_plane_nodes(
    session: Session, cluster: ClusterRow, region: RegionRow, now: datetime
) -> list[NodeRow]:
    spec = region.control_plane
    count = int(spec.get("nodes_per_cluster", 3))
    nodes = []
    for ordinal in range(count):
        region.control_plane_seq = (region.control_plane_seq or 0) + 1
        address = CONTROL_PLANE_NETWORK[region.control_plane_seq]
        node = _new_node(
            cluster,
            NodeRole.CONTROL_PLANE,
            ordinal,
            now,
            node_name=f"cp-{cluster.id[:5]}-{ordinal}",
            host_id=None,
            host_name=f"{region.name}-cp-{cluster.id[:8]}-{ordinal}",
            num_cpu_cores=int(spec.get("num_cpu_cores", 16)),
            num_gpus=0,
            memory_gib=float(spec.get("memory_gib", 64)),
            networks=[f"{address}/{CONTROL_PLANE_NETWORK.prefixlen}"],
            slurm_worker_hostname=None,
        )
        session.add(node)
        nodes.append(node)
    session.flush()
    for node in nodes:
        session.add(
            NodePhaseTransitionRow(
                node_row_id=node.id, phase=NodePhase.PENDING, transition_time=now
            )
        )
    return nodes

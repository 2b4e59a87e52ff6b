"""Handing fleet hosts to clusters and creating the node rows that serve on them.

One placement path for creates, scale-ups and repairs: `reserve_general_hosts` decides on
an index kept between requests (`services/capacity/placement_cache.py`), `claim_hosts` claims the
chosen hosts with one conditional UPDATE (`state = 'available'` in the WHERE clause). If
another writer took any chosen host first, the row count comes up short, the partial claim
is undone and placement runs again on a fresh read, so a host can never serve two clusters
and a refused request leaves nothing half-allocated. Only `available` hosts that are not
draining are offered or claimed, hosts of live capacity pools only to their pool's
clusters (`services/capacity/claims.py`), and the region's policy says whether a cluster may span
fabrics.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    String,
    Table,
    Update,
    any_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from clusterplane.db.prepared import Prepared, PreparedInsert, reader_of
from clusterplane.db.rows import (
    CapacityPoolRow,
    ClusterRow,
    HostRow,
    NodeRow,
    RegionRow,
)
from clusterplane.domain.enums import ClusterType, HostState, NodePhase, NodeRole
from clusterplane.domain.placement import FreeHost, PlacementIndex
from clusterplane.errors import CapacityUnavailable
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.capacity import placement_cache
from clusterplane.services.events.events import write_node_transitions

GPUS_PER_NODE = 8
CONTROL_PLANE_NETWORK = ipaddress.ip_network("100.64.0.0/10")
AGENT_DRIVER = "agent"  # hosts run by node agents (`services.agents.agent_hosts`)


def located(host: HostRow) -> FreeHost:
    """A host row's place in the topology, as placement sees it."""
    return FreeHost(host.id, host.name, host.fabric, host.block, host.rack)


_POOLS = cast(Table, CapacityPoolRow.__table__)
_POOL_WINDOWS = select(_POOLS.c.id, _POOLS.c.ends_at).where(
    _POOLS.c.region == bindparam("region"),
    _POOLS.c.gpu_type == bindparam("gpu_type"),
    _POOLS.c.deleted_at.is_(None),
)


def _live_pools(
    session: Session, region: str, gpu_type: str, now: datetime
) -> tuple[frozenset[str], datetime | None]:
    """The live pools, and when the first of them ends (None: none is live)."""
    windows = session.execute(_POOL_WINDOWS, {"region": region, "gpu_type": gpu_type})
    live = {pool_id: ends_at for pool_id, ends_at in windows if ends_at > now}
    return frozenset(live), min(live.values(), default=None)


def free_hosts(
    session: Session, *, region: str, gpu_type: str, live_pools: Collection[str] = ()
) -> list[FreeHost]:
    """The hosts general placement may choose from, as plain topology facts (one light
    query, not ORM rows: the fleet can hold thousands of them). Hosts of `live_pools` are
    held for their pools (`services/capacity/claims.py` places those)."""
    statement = select(HostRow.id, HostRow.name, HostRow.fabric, HostRow.block, HostRow.rack).where(
        HostRow.region == region,
        HostRow.gpu_type == gpu_type,
        HostRow.state == HostState.AVAILABLE,
        HostRow.draining.is_(False),
        HostRow.in_fleet_file.is_(True),
        HostRow.cluster_id.is_(None),
    )
    if live_pools:
        statement = statement.where(
            or_(HostRow.capacity_pool_id.is_(None), HostRow.capacity_pool_id.not_in(live_pools))
        )
    return [
        FreeHost(host_id=host_id, name=name, fabric=fabric, block=block, rack=rack)
        for host_id, name, fabric, block, rack in session.execute(statement)
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


def allows_cross_fabric(session: Session, region: str) -> bool:
    row = session.get(RegionRow, region)
    return bool(row is not None and row.allow_cross_fabric)


def placement_index(
    session: Session,
    *,
    region: str,
    gpu_type: str,
    full: bool,
    live_pools: Collection[str] = (),
) -> PlacementIndex:
    """A fresh index of the free general hosts; `full` also counts the unplaceable ones."""
    return PlacementIndex(
        free_hosts(session, region=region, gpu_type=gpu_type, live_pools=live_pools),
        allow_cross_fabric=allows_cross_fabric(session, region),
        not_placeable=(
            unplaceable_counts(session, region=region, gpu_type=gpu_type) if full else None
        ),
    )


def general_snapshot(
    session: Session, *, region: str, gpu_type: str, now: datetime, full: bool
) -> placement_cache.Snapshot:
    """The free general hosts at `now` (not those of live capacity pools), good until the
    first live pool ends."""
    live, first_end = _live_pools(session, region, gpu_type, now)
    index = placement_index(session, region=region, gpu_type=gpu_type, full=full, live_pools=live)
    return placement_cache.Snapshot(index, first_end)


CLAIM_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ClaimedHost:
    """A host just claimed for a cluster: what its new node needs to know of it."""

    id: str
    name: str
    fabric: str
    block: str
    rack: str
    num_gpus: int
    num_cpu_cores: int
    memory_gib: float
    ip_address: str
    capacity_pool_id: str | None
    driver: str

    @classmethod
    def of(cls, host: HostRow) -> ClaimedHost:
        return cls(*(getattr(host, name) for name in _CLAIMED_FACTS))


_CLAIMED_FACTS = tuple(f.name for f in fields(ClaimedHost))
_HOSTS = cast(Table, HostRow.__table__)
_NODES = cast(Table, NodeRow.__table__)


# Built once, and run as Core statements (no ORM objects): placement commits run hundreds
# of times a second, and building a statement or an ORM object costs more than SQLite
# takes to run the statement. The claim hands back the claimed hosts' facts (UPDATE ...
# RETURNING, SQLite 3.35+ and PostgreSQL), so no second read is needed.
# `coalesce(cluster_id, '') = ''` rather than `cluster_id IS NULL`: SQLite's planner takes
# the `cluster_id` index for IS NULL over the primary key once the id list is longer than a
# few, and walks every free host of the fleet (5 ms instead of 0.1 ms per claim). The ids
# travel as one value, not one placeholder each (rendered anew for every claim): a JSON
# array read by `json_each` on SQLite, an array on PostgreSQL.
def _claim(one_of: ColumnElement[bool]) -> Update:
    return (
        update(_HOSTS)
        .where(
            one_of,
            _HOSTS.c.state == HostState.AVAILABLE,
            _HOSTS.c.draining.is_(False),
            func.coalesce(_HOSTS.c.cluster_id, "") == "",
            func.coalesce(_HOSTS.c.capacity_pool_id, "").not_in(
                select(_POOLS.c.id).where(
                    _POOLS.c.deleted_at.is_(None),
                    _POOLS.c.ends_at > bindparam("now"),
                    _POOLS.c.id != bindparam("own_pool"),
                )
            ),
        )
        .values(state=HostState.ALLOCATED, cluster_id=bindparam("cluster"))
        .returning(*(_HOSTS.c[name] for name in _CLAIMED_FACTS))
    )


_CLAIM_BY_DIALECT: dict[str, tuple[Update, Callable[[list[str]], object]]] = {
    "postgresql": (_claim(_HOSTS.c.id == any_(bindparam("ids", type_=ARRAY(String)))), list),
    "sqlite": (
        _claim(
            _HOSTS.c.id.in_(
                select(literal_column("value")).select_from(func.json_each(bindparam("ids")))
            )
        ),
        lambda ids: json.dumps(ids),
    ),
}
_UNDO = (
    update(_HOSTS)
    .where(
        _HOSTS.c.id.in_(bindparam("ids", expanding=True)),
        _HOSTS.c.cluster_id == bindparam("cluster"),
        _HOSTS.c.node_row_id.is_(None),
    )
    .values(state=HostState.AVAILABLE, cluster_id=None)
)
_SERVES = (
    update(_HOSTS).where(_HOSTS.c.id == bindparam("host")).values(node_row_id=bindparam("node"))
)
_ADD_NODES = PreparedInsert(_NODES)
_REGIONS = cast(Table, RegionRow.__table__)
_REGION_NETWORK: Prepared[tuple[str | None]] = Prepared(
    select(_REGIONS.c.network).where(_REGIONS.c.name == bindparam("region")), tuple
)


def _forget_loaded_hosts(session: Session, host_ids: Iterable[str]) -> None:
    """Host rows this session loaded before a Core statement changed them are re-read
    on their next use, not trusted."""
    loaded = session.identity_map
    if not loaded:
        return
    for host_id in host_ids:
        row = loaded.get((HostRow, (host_id,), None))
        if row is not None:
            session.expire(row)


def choose_near(
    index: PlacementIndex,
    cluster: ClusterRow,
    count: int,
    near: Sequence[FreeHost],
    fabric: str | None = None,
    reserved: Mapping[str, int] | None = None,
) -> tuple[str, ...]:
    """`count` hosts of `index` for `cluster`, near the hosts of `near` (if any), or in
    `fabric` (a reservation's booked fabric) when it holds none yet. Otherwise, given
    `reserved` (hosts per fabric that reservations still to start are booked for), a
    fabric that has room beside them is preferred, so the cluster need not yield later."""
    fabrics = {h.fabric for h in near} or ({fabric} if fabric else set())
    if not fabrics and reserved and not index.allow_cross_fabric:
        spare = {
            name
            for name, free in index.free_by_fabric().items()
            if free - reserved.get(name, 0) >= count
        }
        if spare:
            return _choose_in(index, cluster, count, spare, near)
    return _choose_in(index, cluster, count, fabrics, near)


def _choose_in(
    index: PlacementIndex,
    cluster: ClusterRow,
    count: int,
    fabrics: set[str],
    near: Sequence[FreeHost],
) -> tuple[str, ...]:
    return index.choose_near(
        count,
        fabrics=fabrics,
        blocks={h.block for h in near},
        racks={h.rack for h in near},
        region=cluster.region,
        gpu_type=cluster.gpu_type,
    )


def reserve_general_hosts(
    session: Session,
    cluster: ClusterRow,
    count: int,
    now: datetime,
    *,
    near: Sequence[FreeHost] = (),
    fresh: bool = False,
    fabric: str | None = None,
    reserved: Mapping[str, int] | None = None,
) -> tuple[str, ...]:
    """Choose `count` general hosts for `cluster` (near the hosts of `near`, if any, or in
    `fabric`; see `choose_near` for `reserved`) on the
    index kept for its region and GPU type, and keep them out of every other decision of
    this process until the session's transaction ends. Nothing is claimed yet: see
    `claim_hosts`. CapacityUnavailable (with the full "no fit" message) when none fit."""
    cache = placement_cache.for_session(session)

    def load(full: bool) -> placement_cache.Snapshot:
        return general_snapshot(
            session, region=cluster.region, gpu_type=cluster.gpu_type, now=now, full=full
        )

    def decide(index: PlacementIndex) -> tuple[str, ...]:
        return choose_near(index, cluster, count, near, fabric, reserved)

    key = (cluster.region, cluster.gpu_type)
    return cache.reserve(session, key, decide, load, fresh=fresh, fleet_now=now)


def claim_hosts(
    session: Session, cluster: ClusterRow, host_ids: Sequence[str], now: datetime
) -> list[ClaimedHost]:
    """Claim exactly `host_ids` for `cluster` (in that order), or none of them.

    The database decides: only hosts still available, not draining, unowned and held by
    no capacity pool live at `now` other than the cluster's own are taken. When a
    concurrent writer changed any first (another replica put it in a pool, say), the
    partial claim is undone, the kept index of the cluster's region is dropped, and
    CapacityUnavailable (code `conflict`) is raised."""
    if not host_ids:
        return []
    claim, ids_value = _CLAIM_BY_DIALECT[session.connection().dialect.name]
    params = {
        "ids": ids_value(list(host_ids)),
        "cluster": cluster.id,
        "now": now,
        "own_pool": cluster.capacity_pool_id or "",
    }
    hosts = [ClaimedHost(*row) for row in session.execute(claim, params)]
    _forget_loaded_hosts(session, host_ids)
    if len(hosts) == len(host_ids):
        order = {host_id: index for index, host_id in enumerate(host_ids)}
        return sorted(hosts, key=lambda h: order[h.id])
    placement_cache.for_session(session).forget(session, (cluster.region, cluster.gpu_type))
    session.execute(_UNDO, {"ids": list(host_ids), "cluster": cluster.id})
    raise CapacityUnavailable(
        "hosts were taken by a concurrent request; try again", code="conflict"
    )


def allocate_hosts(
    session: Session,
    cluster: ClusterRow,
    count: int,
    now: datetime,
    *,
    existing: Sequence[FreeHost] = (),
) -> list[ClaimedHost]:
    """Choose and claim `count` general hosts for `cluster`, near its `existing` hosts.

    If a concurrent request claimed one of the chosen hosts first (another replica, or
    on PostgreSQL, where writers do not queue as on SQLite), placement runs again on a
    fresh read of what is free; CapacityUnavailable only when the fleet really is full.
    """
    if count <= 0:
        return []
    for attempt in range(CLAIM_ATTEMPTS):
        chosen = reserve_general_hosts(
            session, cluster, count, now, near=existing, fresh=attempt > 0
        )
        try:
            return claim_hosts(session, cluster, chosen, now)
        except CapacityUnavailable:
            continue
    raise CapacityUnavailable(
        "hosts kept being taken by concurrent requests; try again", code="conflict"
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
        key = (host.region, host.gpu_type)
        if host.capacity_pool_id is None:
            placement_cache.put_back_on_commit(session, key, [located(host)])
        else:  # general placement may use it or not, depending on its pool's window
            placement_cache.invalidate(session, key)


def _node_values(
    cluster: ClusterRow,
    role: NodeRole,
    ordinal: int,
    now: datetime,
    *,
    node_id: str,
    origin: str = "bring_up",
    preemptible: bool = False,
    auto_remediation: bool = True,
    **facts: Any,
) -> dict[str, Any]:
    """Every column of a new Pending node, for a Core insert (`facts`: its name, host
    and sizes)."""
    return {
        "id": node_id,
        "cluster_id": cluster.id,
        "role": role,
        "ordinal": ordinal,
        "instance_id": new_uuid(),
        "phase": NodePhase.PENDING,
        "status": "Pending",
        "public_ipv4": None,
        "preemptible": preemptible,
        "auto_remediation_enabled": auto_remediation,
        "marked_for_deletion": False,
        "removal_reason": None,
        "origin": origin,
        "drain_until": None,
        "health": "healthy",
        "cordoned_by": None,
        "provider_state": None,
        "created_at": now,
        "deleted_at": None,
        **facts,
    }


def _write_pending_nodes(session: Session, rows: list[dict[str, Any]], now: datetime) -> None:
    """Insert new nodes and the first (Pending) phase of each: one executemany each."""
    reader_of(session).insert(_ADD_NODES, rows)
    pending = NodePhase.PENDING
    write_node_transitions(
        session, [{"node_row_id": r["id"], "phase": pending, "transition_time": now} for r in rows]
    )


def next_ordinal(session: Session, cluster_id: str) -> int:
    """The ordinal a cluster's next GPU worker gets (one past every worker it ever had)."""
    ordinals = session.scalars(
        select(NodeRow.ordinal).where(
            NodeRow.cluster_id == cluster_id, NodeRow.role == NodeRole.GPU_WORKER
        )
    )
    return 1 + max(ordinals, default=-1)


@dataclass(frozen=True, slots=True)
class NewNode:
    """A GPU worker just added (its row is written; load it for anything more)."""

    id: str
    node_name: str
    ordinal: int
    host_id: str
    host_name: str


def add_worker_nodes(
    session: Session,
    cluster: ClusterRow,
    hosts: Sequence[ClaimedHost],
    first_ordinal: int,
    now: datetime,
    *,
    origin: str = "bring_up",
    preemptible: bool = False,
    auto_remediation: bool = True,
) -> list[NewNode]:
    """Write a Pending GPU worker (and its first phase) on each claimed host, ordinals
    from `first_ordinal`, and record on each host the node it serves."""
    found = reader_of(session).all(_REGION_NETWORK, region=cluster.region)
    network = found[0][0] if found else None
    prefix = ipaddress.ip_network(network).prefixlen if network is not None else 32
    short = cluster.id[:5]
    kind = "gpu-preemptible-dp" if preemptible else "gpu-dp"
    slurm = cluster.cluster_type == ClusterType.SLURM
    added: list[NewNode] = []
    rows: list[dict[str, Any]] = []
    for offset, host in enumerate(hosts):
        ordinal = first_ordinal + offset
        node = NewNode(new_uuid(), f"{kind}-{short}-{ordinal}", ordinal, host.id, host.name)
        added.append(node)
        rows.append(
            _node_values(
                cluster,
                NodeRole.GPU_WORKER,
                ordinal,
                now,
                node_id=node.id,
                origin=origin,
                preemptible=preemptible,
                auto_remediation=auto_remediation,
                node_name=node.node_name,
                host_id=host.id,
                host_name=host.name,
                num_cpu_cores=host.num_cpu_cores,
                num_gpus=host.num_gpus,
                memory_gib=host.memory_gib,
                networks=[f"{host.ip_address}/{prefix}"],
                slurm_worker_hostname=_slurm_hostname(slurm, host, node, ordinal),
            )
        )
    if not added:
        return added
    _write_pending_nodes(session, rows, now)
    session.execute(_SERVES, [{"host": n.host_id, "node": n.id} for n in added])
    _forget_loaded_hosts(session, (n.host_id for n in added))
    return added


def _slurm_hostname(slurm: bool, host: ClaimedHost, node: NewNode, ordinal: int) -> str | None:
    """The Slurm node name: on agent hosts the flavour registers the node by its own name
    (and its agent sets that host name); simulated hosts get Slurm-on-Kubernetes names."""
    if not slurm:
        return None
    return (
        node.node_name if host.driver == AGENT_DRIVER else f"worker-{ordinal}.slurm-compute.slurm"
    )


def add_control_plane_nodes(
    session: Session, cluster: ClusterRow, region: RegionRow, now: datetime
) -> list[str]:
    """The cluster's control-plane nodes: virtual machines of the region, or, where the
    region says `placement: hosts`, enrolled hosts without GPUs claimed for the cluster.
    Returns their node ids."""
    spec = region.control_plane
    count = int(spec.get("nodes_per_cluster", 3))
    hosts = _claim_control_plane_hosts(session, cluster, count) if _on_hosts(region) else []
    rows = []
    for ordinal in range(count):
        host = hosts[ordinal] if hosts else None
        if host is None:
            region.control_plane_seq = (region.control_plane_seq or 0) + 1
            address = CONTROL_PLANE_NETWORK[region.control_plane_seq]
            network = f"{address}/{CONTROL_PLANE_NETWORK.prefixlen}"
        rows.append(
            _node_values(
                cluster,
                NodeRole.CONTROL_PLANE,
                ordinal,
                now,
                node_id=new_uuid(),
                node_name=f"cp-{cluster.id[:5]}-{ordinal}",
                host_id=host.id if host else None,
                host_name=host.name if host else f"{region.name}-cp-{cluster.id[:8]}-{ordinal}",
                num_cpu_cores=host.num_cpu_cores if host else int(spec.get("num_cpu_cores", 16)),
                num_gpus=0,
                memory_gib=host.memory_gib if host else float(spec.get("memory_gib", 64)),
                networks=[f"{host.ip_address}/32" if host else network],
                slurm_worker_hostname=None,
            )
        )
    _write_pending_nodes(session, rows, now)
    for host, row in zip(hosts, rows, strict=False):
        host.node_row_id = row["id"]
    return [row["id"] for row in rows]


def _on_hosts(region: RegionRow) -> bool:
    return (region.control_plane or {}).get("placement") == "hosts"


def _claim_control_plane_hosts(session: Session, cluster: ClusterRow, count: int) -> list[HostRow]:
    """`count` free hosts without GPUs in the cluster's region, or CapacityUnavailable."""
    hosts = list(
        session.scalars(
            select(HostRow)
            .where(
                HostRow.region == cluster.region,
                HostRow.num_gpus == 0,
                HostRow.state == HostState.AVAILABLE,
                HostRow.draining.is_(False),
                func.coalesce(HostRow.cluster_id, "") == "",
                HostRow.capacity_pool_id.is_(None),
            )
            .order_by(HostRow.name)
            .limit(count)
            .with_for_update(skip_locked=True)
        )
    )
    if len(hosts) < count:
        raise CapacityUnavailable(
            f"region {cluster.region} has {len(hosts)} free control-plane hosts;"
            f" a cluster needs {count}",
            code="conflict",
        )
    for host in hosts:
        host.state = HostState.ALLOCATED
        host.cluster_id = cluster.id
    return hosts

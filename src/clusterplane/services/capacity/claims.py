"""Claiming hosts for a cluster's workers: standard ones (pool first), reclamation of
preemptible nodes standing in the way, and preemptible fulfilment.

- `claim_workers` gives a started cluster the standard workers it is short of: from its
  capacity pool's free hosts first (its pool part), then from free general hosts. When the
  free hosts cannot hold the rest but would with the hosts of preemptible nodes, those
  nodes are preempted (`preempt`: marked, given `drain_until`, TogetherPreemptionNotified)
  and the claim is made on a later pass, once they have drained and left.
- A reservation (a cluster with an end: reserved, scheduled, or drawing from a pool)
  starts in the fabric it was booked in (`clusters.booked_fabric`). When even the hosts of
  preemptible nodes leave it short, the on-demand clusters booked after it that stand in
  the way yield (`_displace`): they are ended (`displaced_by_booking`, then torn down) so
  that its hosts are free when its window opens. If its fabric cannot hold it even so
  (hosts out of service), it takes free hosts anywhere the region allows.
- `fulfil_preemptible` moves a cluster's live preemptible nodes toward its target: idle
  general hosts only (never pool hosts, never hosts that standard demand waits for), and
  extra ones are scaled down, newest first.

Claims use the conditional UPDATE of `services/capacity/allocation.py` (only hosts still available
and unowned are taken), so a host never serves two nodes. Callers: `services/clusters/clusters.py`
(create and scale-up, strict: 409 when even reclamation cannot make room) and the cluster
controller (each pass of a started cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, not_, select, text
from sqlalchemy.orm import Session

from clusterplane.db.prepared import Prepared, reader_of
from clusterplane.db.rows import (
    SCHEDULED_CLUSTER,
    CapacityPoolRow,
    ClusterRow,
    EventRow,
    HostRow,
    NodeRow,
)
from clusterplane.domain.enums import ClusterPhase, HostState, NodeLifecycleReason, NodeRole
from clusterplane.domain.placement import FreeHost, PlacementIndex
from clusterplane.errors import CapacityUnavailable
from clusterplane.services.capacity import placement_cache
from clusterplane.services.capacity.allocation import (
    CLAIM_ATTEMPTS,
    NewNode,
    add_worker_nodes,
    allows_cross_fabric,
    choose_near,
    claim_hosts,
    next_ordinal,
    reserve_general_hosts,
    unplaceable_counts,
)
from clusterplane.services.capacity.calendar import GPUS_PER_NODE, lock_region, pool_is_live
from clusterplane.services.events.events import (
    cluster_scope,
    node_lifecycle_event,
    record_event,
    refresh_node_status,
    set_cluster_phase,
)

# A scheduled cluster starts taking preemptible hosts back this long before its drain
# window must begin, so that the drained nodes have also terminated when it starts.
START_LEAD = timedelta(minutes=10)


@dataclass
class Claim:
    """What one claim did: nodes added, nodes being preempted for it, or why it waits."""

    added: list[NewNode]
    preempting: int = 0
    waiting: str | None = None


@dataclass(frozen=True)
class _Host:
    facts: FreeHost
    pool_id: str | None
    node_row_id: str | None


def _hosts(session: Session, cluster: ClusterRow, *conditions: object) -> list[_Host]:
    rows = session.execute(
        select(
            HostRow.id,
            HostRow.name,
            HostRow.fabric,
            HostRow.block,
            HostRow.rack,
            HostRow.capacity_pool_id,
            HostRow.node_row_id,
        ).where(
            HostRow.region == cluster.region,
            HostRow.gpu_type == cluster.gpu_type,
            HostRow.in_fleet_file.is_(True),
            *conditions,  # type: ignore[arg-type]
        )
    ).all()
    return [_Host(FreeHost(i, n, f, b, r), p, node) for i, n, f, b, r, p, node in rows]


def _free(session: Session, cluster: ClusterRow) -> list[_Host]:
    return _hosts(
        session,
        cluster,
        HostRow.state == HostState.AVAILABLE,
        HostRow.draining.is_(False),
        HostRow.cluster_id.is_(None),
    )


def _general(
    hosts: Sequence[_Host], pools: dict[str, CapacityPoolRow], now: datetime
) -> list[_Host]:
    return [h for h in hosts if h.pool_id is None or not pool_is_live(pools.get(h.pool_id), now)]


def _pools(session: Session, cluster: ClusterRow) -> dict[str, CapacityPoolRow]:
    rows = session.scalars(
        select(CapacityPoolRow).where(
            CapacityPoolRow.region == cluster.region, CapacityPoolRow.gpu_type == cluster.gpu_type
        )
    )
    return {p.id: p for p in rows}


def _staying_workers(preemptible: bool) -> tuple[ColumnElement[bool], ...]:
    """Live GPU workers of one kind that are staying (not marked for deletion)."""
    return (
        NodeRow.role == NodeRole.GPU_WORKER,
        NodeRow.deleted_at.is_(None),
        NodeRow.preemptible.is_(preemptible),
        NodeRow.marked_for_deletion.is_(False),
    )


def workers(session: Session, cluster_id: str, *, preemptible: bool) -> list[NodeRow]:
    """Live GPU workers of one kind that are staying (not marked for deletion)."""
    return list(
        session.scalars(
            select(NodeRow)
            .where(NodeRow.cluster_id == cluster_id, *_staying_workers(preemptible))
            .order_by(NodeRow.ordinal)
        )
    )


@dataclass(frozen=True)
class _Roster:
    """A cluster's GPU workers as a claim sees them."""

    standard_hosts: list[str | None]  # the hosts of its standard workers that stay
    next_ordinal: int  # one past every GPU worker it ever had


_NODES = cast(Table, NodeRow.__table__)
_HOSTS = cast(Table, HostRow.__table__)
# Core statements on the tables, built once: a claim runs on every create and scale-up.
_WORKERS: Prepared[tuple[int, str | None, bool, bool, datetime | None]] = Prepared(
    select(
        _NODES.c.ordinal,
        _NODES.c.host_id,
        _NODES.c.preemptible,
        _NODES.c.marked_for_deletion,
        _NODES.c.deleted_at,
    ).where(_NODES.c.cluster_id == bindparam("cluster"), _NODES.c.role == NodeRole.GPU_WORKER),
    tuple,
)


def _roster(session: Session, cluster_id: str) -> _Roster:
    standard: list[str | None] = []
    last = -1
    for ordinal, host_id, preemptible, leaving, deleted_at in reader_of(session).all(
        _WORKERS, cluster=cluster_id
    ):
        last = max(last, ordinal)
        if deleted_at is None and not preemptible and not leaving:
            standard.append(host_id)
    return _Roster(standard, last + 1)


_HELD = select(
    *(_HOSTS.c[name] for name in ("id", "name", "fabric", "block", "rack", "capacity_pool_id"))
).where(_HOSTS.c.id.in_(bindparam("ids", expanding=True)))


def _held_facts(session: Session, host_ids: Sequence[str]) -> list[tuple[FreeHost, str | None]]:
    """Where the hosts of `host_ids` sit, and the capacity pool each belongs to."""
    if not host_ids:
        return []
    rows = session.execute(_HELD, {"ids": list(host_ids)})
    return [(FreeHost(i, n, f, b, r), pool) for i, n, f, b, r, pool in rows]


def _place(
    session: Session,
    cluster: ClusterRow,
    free: Sequence[FreeHost],
    count: int,
    near: Sequence[FreeHost],
    fabric: str | None = None,
) -> tuple[str, ...]:
    cross = allows_cross_fabric(session, cluster.region)
    index = PlacementIndex(free, allow_cross_fabric=cross)
    try:
        return choose_near(index, cluster, count, near, fabric)
    except CapacityUnavailable:
        # The "no fit" answer also says which hosts were left out, and why.
        left_out = unplaceable_counts(session, region=cluster.region, gpu_type=cluster.gpu_type)
        index = PlacementIndex(free, allow_cross_fabric=cross, not_placeable=left_out)
        return choose_near(index, cluster, count, near, fabric)


def _booked_fabric(session: Session, cluster: ClusterRow, held: Sequence[FreeHost]) -> str | None:
    """The fabric a reservation's first workers go to: the one it was booked in."""
    if held or cluster.booked_fabric is None or allows_cross_fabric(session, cluster.region):
        return None
    return cluster.booked_fabric


_RESERVED_FABRICS: Prepared[tuple[str | None, int]] = Prepared(
    select(ClusterRow.booked_fabric, func.sum(ClusterRow.num_gpus))
    .where(
        ClusterRow.region == bindparam("region"),
        ClusterRow.gpu_type == bindparam("gpu_type"),
        text(SCHEDULED_CLUSTER),  # from `ix_clusters_scheduled_fabrics` alone
        ClusterRow.booked_fabric.is_not(None),
    )
    .group_by(ClusterRow.booked_fabric),
    tuple,
)


def _reserved_fabrics(session: Session, cluster: ClusterRow) -> dict[str, int]:
    """Hosts per fabric of the cluster's region and GPU type that reservations still to
    start are booked for: an on-demand cluster placed beside them need not yield later."""
    rows = reader_of(session).all(
        _RESERVED_FABRICS, region=cluster.region, gpu_type=cluster.gpu_type
    )
    return {fabric: int(gpus) // GPUS_PER_NODE for fabric, gpus in rows if fabric}


def _reserves(cluster: ClusterRow) -> bool:
    """A reservation (it has an end) is owed its hosts; on-demand clusters yield to it."""
    return cluster.reservation_end_time is not None or cluster.capacity_pool_id is not None


def claim_workers(
    session: Session,
    cluster: ClusterRow,
    now: datetime,
    *,
    drain: timedelta,
    strict: bool,
    take: bool = True,
) -> Claim:
    """Give `cluster` the standard workers it is short of, or make room for them.

    `strict` (a user's create or scale-up): CapacityUnavailable when not even the hosts of
    preemptible nodes would make room. Otherwise the shortfall is reported in `waiting`.
    `take` False only makes room (a scheduled cluster about to start): nothing is claimed.
    """
    roster = _roster(session, cluster.id)
    gap = cluster.num_gpus // GPUS_PER_NODE - len(roster.standard_hosts)
    if gap <= 0:
        return Claim([])
    # Claims in one region queue on its row (PostgreSQL), so the free hosts read below
    # are not being claimed by a concurrent transaction.
    lock_region(session, cluster.region)
    held_facts = _held_facts(session, [h for h in roster.standard_hosts if h])
    held = [facts for facts, _ in held_facts]
    pool = (
        session.get(CapacityPoolRow, cluster.capacity_pool_id) if cluster.capacity_pool_id else None
    )
    pool_gap = 0
    if pool is not None and pool.deleted_at is None and pool.starts_at <= now < pool.ends_at:
        pool_have = sum(pool_id == pool.id for _, pool_id in held_facts)
        pool_gap = max(0, min(gap, cluster.num_capacity_pool_gpus // GPUS_PER_NODE - pool_have))
    rest = gap - pool_gap
    fabric = _booked_fabric(session, cluster, held)
    reserved = _reserved_fabrics(session, cluster) if not held and not _reserves(cluster) else None
    for attempt in range(CLAIM_ATTEMPTS):
        in_pool: list[FreeHost] = []
        if pool_gap:
            in_pool = [
                h.facts
                for h in _free(session, cluster)
                if pool is not None and h.pool_id == pool.id
            ]
            try:
                pool_part = _place(session, cluster, in_pool, pool_gap, held)
            except CapacityUnavailable as exc:
                if strict:
                    raise CapacityUnavailable(
                        f"capacity pool: {exc.message}", param="num_capacity_pool_gpus"
                    ) from exc
                return Claim([], waiting=f"capacity pool: {exc.message}")
        else:
            pool_part = ()
        near = held + [h for h in in_pool if h.host_id in pool_part]
        try:
            general = (
                reserve_general_hosts(
                    session,
                    cluster,
                    rest,
                    now,
                    near=near,
                    fresh=attempt > 0,
                    fabric=fabric,
                    reserved=reserved,
                )
                if rest
                else ()
            )
        except CapacityUnavailable as exc:
            room = _make_room(
                session, cluster, rest, near, set(pool_part), now, drain, fabric, strict
            )
            if room is not None:
                return room
            if fabric is not None:
                fabric = None  # its fabric cannot hold it: any free hosts will do
                continue
            if strict:
                raise
            return Claim([], waiting=exc.message)
        if not take:
            # Only room was wanted: the reservation is given up with the kept index.
            placement_cache.for_session(session).forget(session, (cluster.region, cluster.gpu_type))
            return Claim([])
        try:
            hosts = claim_hosts(session, cluster, (*pool_part, *general), now)
        except CapacityUnavailable:
            continue
        origin = "bring_up" if cluster.first_ready_at is None else "scale_up"
        return Claim(
            add_worker_nodes(session, cluster, hosts, roster.next_ordinal, now, origin=origin)
        )
    message = "hosts kept being taken by concurrent requests; try again"
    if strict:
        raise CapacityUnavailable(message, code="conflict")
    return Claim([], waiting=message)


def _make_room(
    session: Session,
    cluster: ClusterRow,
    count: int,
    near: Sequence[FreeHost],
    taken: set[str],
    now: datetime,
    drain: timedelta,
    fabric: str | None,
    strict: bool,
) -> Claim | None:
    """Room for `count` more general workers, from preemptible nodes and then (for a
    reservation starting, not a user's request) the on-demand clusters that yield to it;
    None when even that is short."""
    pools = _pools(session, cluster)
    free = [h.facts for h in _general(_free(session, cluster), pools, now)]
    free = [h for h in free if h.host_id not in taken]
    preempting = _reclaim(session, cluster, free, count, near, pools, now, drain, fabric)
    if preempting is not None:
        return Claim([], preempting=preempting, waiting="preempting nodes to make room")
    if strict or not _reserves(cluster):
        return None
    ending = _displace(session, cluster, free, count, near, pools, now, drain, fabric)
    if ending is None:
        return None
    return Claim(
        [],
        preempting=ending,
        waiting="ending on-demand clusters that yield to this reservation, to make room",
    )


def _reclaim(
    session: Session,
    cluster: ClusterRow,
    free: list[FreeHost],
    count: int,
    near: Sequence[FreeHost],
    pools: dict[str, CapacityPoolRow],
    now: datetime,
    drain: timedelta,
    fabric: str | None = None,
) -> int | None:
    """Preempt the preemptible nodes whose hosts would let `count` more workers fit;
    None when even that would not. Returns how many nodes are now on their way out."""
    node_of, facts = _preemptible(session, cluster, pools, now)
    try:
        chosen = _place(session, cluster, free + facts, count, near, fabric)
    except CapacityUnavailable:
        return None
    victims = [node_of[h] for h in chosen if h in node_of]
    for node in victims:
        preempt(session, node, now, drain)
    return len(victims)


def _preemptible(
    session: Session, cluster: ClusterRow, pools: dict[str, CapacityPoolRow], now: datetime
) -> tuple[dict[str, NodeRow], list[FreeHost]]:
    """The live preemptible nodes on general hosts of the cluster's region and GPU type, by
    host id, and those hosts."""
    hosts = {
        h.facts.host_id: h
        for h in _general(_hosts(session, cluster, HostRow.node_row_id.is_not(None)), pools, now)
    }
    node_of: dict[str, NodeRow] = {}
    if hosts:
        for node in session.scalars(
            select(NodeRow).where(
                NodeRow.id.in_([h.node_row_id for h in hosts.values()]),
                NodeRow.preemptible.is_(True),
                NodeRow.deleted_at.is_(None),
            )
        ):
            if node.host_id:
                node_of[node.host_id] = node
    return node_of, [hosts[h].facts for h in node_of]


def _displace(
    session: Session,
    cluster: ClusterRow,
    free: list[FreeHost],
    count: int,
    near: Sequence[FreeHost],
    pools: dict[str, CapacityPoolRow],
    now: datetime,
    drain: timedelta,
    fabric: str | None,
) -> int | None:
    """End the newest on-demand clusters booked after `cluster` until `count` more workers
    fit on the free hosts, the hosts of preemptible nodes, and those of clusters already
    being deleted; None when even ending all of them would not do. Returns how many
    clusters and preemptible nodes are now on their way out."""
    node_of, facts = _preemptible(session, cluster, pools, now)
    leaving = _general(
        _hosts(
            session,
            cluster,
            HostRow.cluster_id.in_(
                select(ClusterRow.id).where(ClusterRow.delete_requested_at.is_not(None))
            ),
        ),
        pools,
        now,
    )
    candidates = free + facts + [h.facts for h in leaving if h.facts.host_id not in node_of]
    seen = {h.host_id for h in candidates}
    ending: list[tuple[ClusterRow, set[str]]] = []
    for other in [None, *_yielding(session, cluster)]:
        if other is not None:
            held = _general(_hosts(session, cluster, HostRow.cluster_id == other.id), pools, now)
            ending.append((other, {h.facts.host_id for h in held}))
            candidates += [h.facts for h in held if h.facts.host_id not in seen]
            seen |= ending[-1][1]
        try:
            chosen = set(_place(session, cluster, candidates, count, near, fabric))
        except CapacityUnavailable:
            continue
        break
    else:
        return None
    ended = [other for other, hosts in ending if hosts & chosen]
    for other in ended:
        end_for_booking(session, other, cluster, now)
    victims = [
        node_of[h]
        for h in chosen
        if h in node_of and node_of[h].cluster_id not in {o.id for o in ended}
    ]
    for node in victims:
        preempt(session, node, now, drain)
    return len(ended) + len(victims)


def _yielding(session: Session, cluster: ClusterRow) -> list[ClusterRow]:
    """The live on-demand clusters of the region and GPU type booked after `cluster`,
    newest first: they yield to it."""
    return list(
        session.scalars(
            select(ClusterRow)
            .where(
                ClusterRow.region == cluster.region,
                ClusterRow.gpu_type == cluster.gpu_type,
                ClusterRow.deleted_at.is_(None),
                ClusterRow.delete_requested_at.is_(None),
                ClusterRow.reservation_end_time.is_(None),
                ClusterRow.capacity_pool_id.is_(None),
                ClusterRow.booked_seq > (cluster.booked_seq or 0),
            )
            .order_by(ClusterRow.booked_seq.desc())
        )
    )


def end_for_booking(
    session: Session, cluster: ClusterRow, booking: ClusterRow, now: datetime
) -> None:
    """Wind an on-demand cluster down because a reservation made before it needs its hosts."""
    record_event(
        session,
        object_type="cluster",
        object_id=cluster.id,
        kind="displaced_by_booking",
        message=(
            f"its hosts are booked from {_start_of(booking, now).isoformat()} by a reservation "
            "made before this cluster; the cluster is wound down"
        ),
        at=now,
        scope=cluster_scope(cluster),
    )
    cluster.delete_requested_at = now
    cluster.step_state = None
    set_cluster_phase(session, cluster, ClusterPhase.DELETING, now)
    cluster.next_reconcile_at = now


def _start_of(cluster: ClusterRow, now: datetime) -> datetime:
    start = cluster.reservation_start_time
    return start if start is not None and start > now else now


def preempt(session: Session, node: NodeRow, now: datetime, drain: timedelta) -> None:
    """Start taking a preemptible node back: it drains until `now + drain`, then leaves."""
    if node.marked_for_deletion:
        return
    node.marked_for_deletion = True
    node.removal_reason = "preempted"
    node.drain_until = now + drain
    refresh_node_status(node)
    node_lifecycle_event(
        session,
        cluster_id=node.cluster_id,
        node_name=node.node_name,
        reason=NodeLifecycleReason.PREEMPTION_NOTIFIED,
        message=f"reclaimed for standard capacity; drains until {node.drain_until.isoformat()}",
        now=now,
    )
    owner = session.get(ClusterRow, node.cluster_id)
    if owner is not None:
        owner.next_reconcile_at = now


def _waiting_demand(session: Session, cluster: ClusterRow, now: datetime, drain: timedelta) -> int:
    """Standard nodes the region's clusters are waiting for, or will be once scheduled
    clusters that start soon (within the drain window and `START_LEAD`) begin: one
    statement, each cluster's staying standard workers counted from the nodes' index."""
    staying = (
        select(func.count())
        .where(NodeRow.cluster_id == ClusterRow.id, *_staying_workers(False))
        .scalar_subquery()
    )
    later = and_(
        ClusterRow.phase == ClusterPhase.SCHEDULED,
        ClusterRow.reservation_start_time.is_not(None),
        ClusterRow.reservation_start_time > now + drain + START_LEAD,
    )
    rows = session.execute(
        select(ClusterRow.num_gpus, staying).where(
            ClusterRow.region == cluster.region,
            ClusterRow.gpu_type == cluster.gpu_type,
            ClusterRow.deleted_at.is_(None),
            ClusterRow.phase != ClusterPhase.DELETING,
            not_(later),
        )
    ).all()
    return sum(max(0, gpus // GPUS_PER_NODE - have) for gpus, have in rows)


def fulfil_preemptible(
    session: Session, cluster: ClusterRow, now: datetime, *, drain: timedelta
) -> bool:
    """Move live preemptible nodes toward the target; True if anything changed."""
    live = workers(session, cluster.id, preemptible=True)
    want = cluster.desired_preemptible_gpus // GPUS_PER_NODE
    if len(live) > want:
        for node in sorted(live, key=lambda n: (n.created_at, n.ordinal), reverse=True)[
            : len(live) - want
        ]:
            node.marked_for_deletion = True
            node.removal_reason = "scale_down"
            refresh_node_status(node)
        return True
    gap = want - len(live)
    if gap <= 0:
        return False
    pools = _pools(session, cluster)
    idle = [h.facts for h in _general(_free(session, cluster), pools, now)]
    if not idle:
        return False  # nothing to take, whatever the others wait for
    room = min(gap, len(idle) - _waiting_demand(session, cluster, now, drain))
    standard = workers(session, cluster.id, preemptible=False)
    near = [facts for facts, _ in _held_facts(session, [n.host_id for n in standard if n.host_id])]
    # Near the cluster's fabric first; preemptible capacity may also come from another.
    attempts = [(count, near) for count in range(room, 0, -1)] + [
        (count, []) for count in range(room, 0, -1)
    ]
    for count, beside in attempts:
        try:
            chosen = _place(session, cluster, idle, count, beside)
        except CapacityUnavailable:
            continue
        try:
            hosts = claim_hosts(session, cluster, chosen, now)
        except CapacityUnavailable:
            return False
        ordinal = next_ordinal(session, cluster.id)
        nodes = add_worker_nodes(
            session, cluster, hosts, ordinal, now, origin="scale_up", preemptible=True
        )
        record_event(
            session,
            object_type="cluster",
            object_id=cluster.id,
            kind="preemptible_fulfilled",
            message=f"{len(nodes)} preemptible node(s) added toward {want}",
            at=now,
            scope=cluster_scope(cluster),
        )
        return True
    return False


def note_waiting(session: Session, cluster: ClusterRow, why: str, now: datetime) -> None:
    """Say in the audit trail that a cluster waits for hosts, once per reason."""
    last = session.scalar(
        select(EventRow.message)
        .where(
            EventRow.object_type == "cluster",
            EventRow.object_id == cluster.id,
            EventRow.kind == "waiting_for_hosts",
        )
        .order_by(EventRow.id.desc())
        .limit(1)
    )
    if last != why:
        record_event(
            session,
            object_type="cluster",
            object_id=cluster.id,
            kind="waiting_for_hosts",
            message=why,
            at=now,
            scope=cluster_scope(cluster),
        )

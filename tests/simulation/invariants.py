"""What must hold after every step of a simulation, and what "converged" means.

Read straight from the database (a separate session, never through the engine's caches):
* no host serves two clusters; a held host belongs to a live cluster and a live node;
* every create a client was told succeeded exists until the client deleted it, and no
  create that was refused with a 5xx left anything behind;
* each live cluster has exactly num_gpus / 8 serving standard GPU workers (allocation is
  synchronous, so this holds at every instant, not only eventually), except a booking
  whose window has not opened yet, which holds none; and no more preemptible ones than
  it asked for;
* a booking (scheduled, reserved, in a pool) lives at least until its window ends;
* the project stays within its GPU quota, a live pool's hosts serve only its project's
  clusters, and a cluster draws no more GPUs from its pool than the pool has;
* a region's live volumes fit in its shared storage;
* a quarantined host serves nobody; every open remediation belongs to a live node (or,
  once the node is replaced, to its live replacement) and is due to be looked at.
Converged: every wanted cluster Ready with its workers running and no node draining,
every booking Scheduled, Ready or wound down as its window says, every deleted cluster
gone, every volume settled, every remediation finished.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.engine import make_session_factory, read_transaction
from clusterplane.db.rows import (
    CapacityPoolRow,
    ClusterRow,
    EventRow,
    HostRow,
    NodeRow,
    ProjectQuotaRow,
    RegionRow,
    RemediationRow,
    VolumeRow,
)
from clusterplane.domain.enums import (
    ClusterPhase,
    HostState,
    NodePhase,
    NodeRole,
    RemediationState,
)
from clusterplane.domain.remediation import TERMINAL

if TYPE_CHECKING:
    from tests.simulation.harness import World


def observer(world: World) -> sessionmaker[Session]:
    """Sessions on the world's database that no injected fault touches."""
    assert world.app is not None
    return make_session_factory(world.app.engine)


def _fail(message: str) -> None:
    from tests.simulation.harness import SimulationFailure

    raise SimulationFailure(message)


def check_invariants(world: World) -> None:
    assert world.app is not None
    now = world.clock.now()
    with read_transaction(observer(world)) as session:
        clusters = {c.id: c for c in session.scalars(select(ClusterRow))}
        nodes = list(session.scalars(select(NodeRow).where(NodeRow.deleted_at.is_(None))))
        hosts = {h.id: h for h in session.scalars(select(HostRow))}
        _check_capacity(session, clusters, hosts, now)
        _check_remediations(session, now)
        displaced = _displaced(session)
    _check_hosts(clusters, nodes, hosts)
    _check_ledger(world, clusters, displaced)
    for cluster in clusters.values():
        if cluster.deleted_at is not None or cluster.delete_requested_at is not None:
            continue
        workers = [
            n
            for n in nodes
            if n.cluster_id == cluster.id
            and n.role == NodeRole.GPU_WORKER
            and not n.marked_for_deletion
        ]
        serving = [n for n in workers if not n.preemptible]
        waiting = cluster.phase in (ClusterPhase.SCHEDULED, ClusterPhase.QUEUED) and not serving
        if len(serving) * 8 != cluster.num_gpus and not waiting:
            _fail(f"cluster {cluster.id} wants {cluster.num_gpus} GPUs, has {len(serving)} nodes")
        if (len(workers) - len(serving)) * 8 > cluster.desired_preemptible_gpus:
            _fail(f"cluster {cluster.id} holds more preemptible nodes than it asked for")


def _check_capacity(
    session: Session, clusters: dict[str, ClusterRow], hosts: dict[str, HostRow], now: datetime
) -> None:
    live = [c for c in clusters.values() if c.deleted_at is None and c.delete_requested_at is None]
    for quota in session.scalars(select(ProjectQuotaRow)):
        used = sum(c.num_gpus for c in live if c.project_id == quota.project_id)
        if used > quota.max_gpus:
            _fail(f"project {quota.project_id} uses {used} GPUs over its quota {quota.max_gpus}")
    pools = {p.id: p for p in session.scalars(select(CapacityPoolRow))}
    for host in hosts.values():
        pool = pools.get(host.capacity_pool_id or "")
        owner = clusters.get(host.cluster_id or "")
        if pool is None or owner is None or pool.deleted_at is not None or now >= pool.ends_at:
            continue
        if owner.project_id != pool.project_id:
            _fail(f"host {host.name} of pool {pool.name} serves another project's cluster")
    for cluster in live:
        if cluster.capacity_pool_id is None:
            continue
        room = 8 * sum(1 for h in hosts.values() if h.capacity_pool_id == cluster.capacity_pool_id)
        if cluster.num_capacity_pool_gpus > room:
            _fail(f"cluster {cluster.id} draws {cluster.num_capacity_pool_gpus} GPUs of {room}")
    for region in session.scalars(select(RegionRow)):
        used_tib = sum(
            v.size_tib
            for v in session.scalars(
                select(VolumeRow).where(
                    VolumeRow.region == region.name, VolumeRow.deleted_at.is_(None)
                )
            )
        )
        if used_tib > region.storage_capacity_tib:
            _fail(f"region {region.name} holds {used_tib} TiB of {region.storage_capacity_tib}")


def _check_remediations(session: Session, now: datetime) -> None:
    """An open remediation is about a live node (or its live replacement), and due: none is
    left open for a node that is gone."""
    for row in session.scalars(
        select(RemediationRow).where(RemediationRow.state.not_in(list(TERMINAL)))
    ):
        node = session.get(NodeRow, row.node_row_id)
        replacement = session.get(NodeRow, row.replacement_node_row_id or "")
        cluster = session.get(ClusterRow, row.cluster_id)
        alive = [n for n in (node, replacement) if n is not None and n.deleted_at is None]
        if cluster is None or cluster.deleted_at is not None:
            _fail(f"remediation {row.id} is {row.state} for a deleted cluster")
        waiting = row.state in (RemediationState.PENDING_APPROVAL, RemediationState.PENDING)
        if not alive and (waiting or row.next_reconcile_at is None):
            _fail(f"remediation {row.id} is {row.state} for a gone node")


def _check_hosts(
    clusters: dict[str, ClusterRow], nodes: list[NodeRow], hosts: dict[str, HostRow]
) -> None:
    on_host: dict[str, set[str]] = defaultdict(set)
    for node in nodes:
        if node.host_id is None:
            continue
        on_host[node.host_id].add(node.cluster_id)
        host = hosts[node.host_id]
        if host.cluster_id != node.cluster_id:
            _fail(
                f"node {node.id} of {node.cluster_id} runs on {host.name} held by {host.cluster_id}"
            )
    for host_id, owners in on_host.items():
        if len(owners) > 1:
            _fail(f"host {hosts[host_id].name} serves clusters {sorted(owners)}")
    for host in hosts.values():
        if host.state == HostState.QUARANTINED and (host.cluster_id or host.node_row_id):
            _fail(f"quarantined host {host.name} is handed out to {host.cluster_id}")
        if host.cluster_id is None:
            if host.state == HostState.ALLOCATED:
                _fail(f"host {host.name} is allocated to nobody")
            continue
        owner = clusters.get(host.cluster_id)
        if owner is None or owner.deleted_at is not None:
            _fail(f"host {host.name} is held by gone cluster {host.cluster_id}")
        if host.state != HostState.ALLOCATED:
            _fail(f"host {host.name} is held by {host.cluster_id} but {host.state}")


def _displaced(session: Session) -> set[str]:
    """Clusters a reservation booked before them displaced (docs/capacity.md)."""
    query = select(EventRow.object_id).where(EventRow.kind == "displaced_by_booking")
    return set(session.scalars(query))


def _check_ledger(world: World, clusters: dict[str, ClusterRow], displaced: set[str]) -> None:
    """Acknowledged clusters stay, except those a reservation made before them displaced
    (ended on purpose, with a `displaced_by_booking` event: docs/capacity.md)."""
    for cluster_id in set(world.ledger.wanted) - displaced:
        row = clusters.get(cluster_id)
        if row is None or row.deleted_at is not None or row.delete_requested_at is not None:
            _fail(f"acknowledged cluster {cluster_id} was lost")
    names = {c.name for c in clusters.values()}
    now = world.clock.now()
    for cluster_id, (_, end) in world.ledger.bookings.items():
        row = clusters.get(cluster_id)
        gone = row is None or row.deleted_at is not None or row.delete_requested_at is not None
        if gone and now < end:
            _fail(f"booked cluster {cluster_id} was lost before its window ended")
    leftover = world.ledger.refused_names & names
    if leftover:
        _fail(f"creates answered with a 5xx left clusters behind: {sorted(leftover)}")


def check_converged(world: World, *, final: bool) -> bool:
    """True when everything settled; with `final`, a failure says what did not."""
    assert world.app is not None
    with read_transaction(observer(world)) as session:
        problems = _unsettled(world, session)
    if problems and final:
        _fail("did not converge: " + "; ".join(problems[:5]))
    return not problems


def _unsettled(world: World, session: Session) -> list[str]:
    problems = _unsettled_bookings(world, session)
    displaced = _displaced(session)
    for cluster_id, gpus in world.ledger.wanted.items():
        if cluster_id in displaced:
            continue  # ended on purpose for an earlier reservation: it winds down
        cluster = session.get(ClusterRow, cluster_id)
        assert cluster is not None
        workers = list(
            session.scalars(
                select(NodeRow).where(
                    NodeRow.cluster_id == cluster_id,
                    NodeRow.deleted_at.is_(None),
                    NodeRow.role == NodeRole.GPU_WORKER,
                    NodeRow.preemptible.is_(False),
                )
            )
        )
        if cluster.status != "Ready":
            problems.append(f"{cluster_id[:8]} is {cluster.status}")
        elif any(w.marked_for_deletion or w.phase != NodePhase.RUNNING for w in workers):
            problems.append(f"{cluster_id[:8]} has nodes still changing")
        elif len(workers) * 8 != cluster.num_gpus or cluster.num_gpus != gpus:
            problems.append(f"{cluster_id[:8]} has {len(workers)} nodes for {gpus} GPUs")
    for cluster_id in world.ledger.deleted:
        cluster = session.get(ClusterRow, cluster_id)
        if cluster is not None and cluster.deleted_at is None:
            problems.append(f"deleted {cluster_id[:8]} still {cluster.status}")
    for volume in session.scalars(select(VolumeRow).where(VolumeRow.deleted_at.is_(None))):
        if volume.status not in ("available", "bound") or volume.next_reconcile_at is not None:
            problems.append(f"volume {volume.id[:8]} still {volume.status}")
    for remediation in session.scalars(select(RemediationRow)):
        if RemediationState(remediation.state) not in TERMINAL:
            problems.append(f"remediation {remediation.id[:8]} still {remediation.state}")
    return problems


def _unsettled_bookings(world: World, session: Session) -> list[str]:
    now = world.clock.now()
    problems: list[str] = []
    for cluster_id, (start, end) in world.ledger.bookings.items():
        cluster = session.get(ClusterRow, cluster_id)
        assert cluster is not None
        if now >= end:
            if cluster.deleted_at is None:
                problems.append(f"booking {cluster_id[:8]} past its window is {cluster.status}")
        elif now < start:
            if cluster.status != "Scheduled":
                problems.append(f"booking {cluster_id[:8]} before its window is {cluster.status}")
        elif cluster.status != "Ready":
            problems.append(f"booking {cluster_id[:8]} in its window is {cluster.status}")
    return problems

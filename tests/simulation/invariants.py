"""What must hold after every step of a simulation, and what "converged" means.

Read straight from the database (a separate session, never through the engine's caches):
* no host serves two clusters; a held host belongs to a live cluster and a live node;
* every create a client was told succeeded exists until the client deleted it, and no
  create that was refused with a 5xx left anything behind;
* each live cluster has exactly num_gpus / 8 serving GPU workers (allocation is
  synchronous, so this holds at every instant, not only eventually).
Converged: every wanted cluster Ready with its workers running and no node draining,
every deleted cluster gone, every volume settled, every remediation finished.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.engine import make_session_factory, read_transaction
from clusterplane.db.rows import ClusterRow, HostRow, NodeRow, RemediationRow, VolumeRow
from clusterplane.domain.enums import HostState, NodePhase, NodeRole, RemediationState
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
    with read_transaction(observer(world)) as session:
        clusters = {c.id: c for c in session.scalars(select(ClusterRow))}
        nodes = list(session.scalars(select(NodeRow).where(NodeRow.deleted_at.is_(None))))
        hosts = {h.id: h for h in session.scalars(select(HostRow))}
    _check_hosts(clusters, nodes, hosts)
    _check_ledger(world, clusters)
    for cluster in clusters.values():
        if cluster.deleted_at is not None or cluster.delete_requested_at is not None:
            continue
        serving = [
            n
            for n in nodes
            if n.cluster_id == cluster.id
            and n.role == NodeRole.GPU_WORKER
            and not n.marked_for_deletion
        ]
        if len(serving) * 8 != cluster.num_gpus:
            _fail(f"cluster {cluster.id} wants {cluster.num_gpus} GPUs, has {len(serving)} nodes")


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
        if host.cluster_id is None:
            if host.state == HostState.ALLOCATED:
                _fail(f"host {host.name} is allocated to nobody")
            continue
        owner = clusters.get(host.cluster_id)
        if owner is None or owner.deleted_at is not None:
            _fail(f"host {host.name} is held by gone cluster {host.cluster_id}")
        if host.state != HostState.ALLOCATED:
            _fail(f"host {host.name} is held by {host.cluster_id} but {host.state}")


def _check_ledger(world: World, clusters: dict[str, ClusterRow]) -> None:
    for cluster_id in world.ledger.wanted:
        row = clusters.get(cluster_id)
        if row is None or row.deleted_at is not None or row.delete_requested_at is not None:
            _fail(f"acknowledged cluster {cluster_id} was lost")
    names = {c.name for c in clusters.values()}
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
    problems: list[str] = []
    for cluster_id, gpus in world.ledger.wanted.items():
        cluster = session.get(ClusterRow, cluster_id)
        assert cluster is not None
        workers = list(
            session.scalars(
                select(NodeRow).where(
                    NodeRow.cluster_id == cluster_id,
                    NodeRow.deleted_at.is_(None),
                    NodeRow.role == NodeRole.GPU_WORKER,
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

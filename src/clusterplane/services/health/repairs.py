"""Carrying out a remediation's mode on a node, inside the remediation controller's apply.

* REBOOT_VM / HOST_POWER_CYCLE: the same instance on the same host boots again.
* VM_ONLY: a new instance takes the node's place on the same host.
* HOST_AWARE: a new instance on a spare host in the cluster's fabric; the old host is
  quarantined once its instance is gone, so it is never handed out again unrepaired.
* EVICT_WITHOUT_REPLACEMENT: the node leaves, the cluster shrinks by its GPUs, the host
  is quarantined.
A host is quarantined only on evidence (`has_evidence`): an unhealthy health signal
behind the repair, or one still open on the node or its host (a failed check is one).
A tenant asking to move off (or give up) a host nothing is known against sends that host
straight back to the fleet: quarantine takes a host from every tenant for days.
The cluster controller does the booting and tearing down; these functions only change
rows, and return a reason when the mode cannot be carried out.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ClusterRow, HealthEventRow, HostRow, NodeRow, RemediationRow
from clusterplane.domain.enums import NodePhase, NodeRole, RemediationMode
from clusterplane.domain.health import Action
from clusterplane.domain.remediation import IN_PLACE
from clusterplane.errors import CapacityUnavailable
from clusterplane.providers.models import DriverState
from clusterplane.services.capacity.allocation import (
    ClaimedHost,
    add_worker_nodes,
    allocate_hosts,
    located,
    next_ordinal,
)
from clusterplane.services.events.events import set_node_phase

M = RemediationMode


def _live_workers(session: Session, cluster_id: str) -> list[NodeRow]:
    return list(
        session.scalars(
            select(NodeRow).where(
                NodeRow.cluster_id == cluster_id,
                NodeRow.role == NodeRole.GPU_WORKER,
                NodeRow.deleted_at.is_(None),
            )
        )
    )


def has_evidence(session: Session, remediation: RemediationRow, node: NodeRow) -> bool:
    """Whether an unhealthy signal speaks against the node's host: one linked to this
    repair, or one still open on the node or its host."""
    open_here = HealthEventRow.resolved_at.is_(None) & (
        (HealthEventRow.node_row_id == node.id) | (HealthEventRow.host_id == node.host_id)
    )
    found = session.scalar(
        select(HealthEventRow.id)
        .where(
            HealthEventRow.action != Action.NONE,
            (HealthEventRow.remediation_id == remediation.id) | open_here,
        )
        .limit(1)
    )
    return found is not None


def _retire(node: NodeRow, reason: str) -> None:
    node.marked_for_deletion = True
    node.removal_reason = reason
    node.status = "Draining"


def perform(
    session: Session,
    remediation: RemediationRow,
    cluster: ClusterRow,
    node: NodeRow,
    *,
    reboot_state: DriverState | None,
    now: datetime,
) -> str | None:
    """Apply the remediation's mode; returns an error message when it cannot be done."""
    mode = RemediationMode(remediation.mode)
    cluster.next_reconcile_at = now
    if mode in IN_PLACE:
        if reboot_state is None:
            return "the instance has not been launched yet; nothing to reboot"
        node.provider_state = reboot_state
        set_node_phase(session, node, NodePhase.BOOTING, now)
        remediation.replacement_node_row_id = node.id
        return None
    if mode == M.EVICT_WITHOUT_REPLACEMENT:
        serving = [n for n in _live_workers(session, cluster.id) if not n.marked_for_deletion]
        if len(serving) <= 1:
            return "cannot evict the last GPU worker of a cluster; delete the cluster instead"
        _retire(node, "quarantined" if has_evidence(session, remediation, node) else "evicted")
        cluster.num_gpus -= node.num_gpus
        cluster.num_reserved_gpus = min(cluster.num_reserved_gpus, cluster.num_gpus)
        return None
    host = session.get(HostRow, node.host_id) if node.host_id else None
    if host is None:
        return "the node has no host to replace it on"
    if mode == M.VM_ONLY:
        hosts = [ClaimedHost.of(host)]
        reason = "replaced"
    else:
        existing = [
            h
            for h in (
                session.get(HostRow, n.host_id)
                for n in _live_workers(session, cluster.id)
                if n.host_id
            )
            if h
        ]
        try:
            hosts = allocate_hosts(
                session, cluster, 1, now, existing=[located(h) for h in existing]
            )
        except CapacityUnavailable as exc:
            return f"no spare host to move to: {exc.message}"
        reason = "quarantined" if has_evidence(session, remediation, node) else "replaced"
    [replacement] = add_worker_nodes(
        session,
        cluster,
        hosts,
        next_ordinal(session, cluster.id),
        now,
        origin="replacement",
        auto_remediation=node.auto_remediation_enabled,
    )
    _retire(node, reason)
    remediation.replacement_node_row_id = replacement.id
    return None

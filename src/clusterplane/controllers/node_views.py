"""A cluster's live nodes as a controller pass reads and writes them: columns, not ORM rows.

For a cluster of thousands of nodes, building and tracking an ORM row per node cost more
than the pass's driver calls. `live_nodes` reads them as `LiveNode`s, in one prepared
statement on the session's own connection and transaction (the snapshot's, the apply's);
`NodeWrites` collects the apply's plain changes of nodes (driver state, flavour state,
phase and status) and writes them as one executemany UPDATE per set of changed columns.
A node whose outcome is more than that (it failed, left, joined) is the apply's to load
as an ORM row; `view_of` turns it back into a view.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update

from clusterplane.db.prepared import Prepared, reader_of
from clusterplane.db.rows import NodeRow


class LiveNode(NamedTuple):
    """A live node's columns: what a pass decides on, tells the drivers and changes."""

    id: str
    cluster_id: str
    role: str
    ordinal: int
    node_name: str
    instance_id: str
    host_id: str | None
    host_name: str
    phase: str
    status: str
    origin: str
    cordoned_by: str | None
    num_gpus: int
    preemptible: bool
    marked_for_deletion: bool
    drain_until: datetime | None
    health: str
    provider_state: dict[str, Any] | None
    flavour_state: dict[str, Any] | None


_LIVE_NODES = Prepared(
    select(*(getattr(NodeRow, name) for name in LiveNode._fields))
    .where(NodeRow.cluster_id == bindparam("cluster"), NodeRow.deleted_at.is_(None))
    .order_by(NodeRow.role, NodeRow.ordinal),
    LiveNode,
)


def live_nodes(session: Session, cluster_id: str) -> list[LiveNode]:
    """The cluster's live nodes, control plane first, each role by ordinal."""
    reader = reader_of(session)
    try:
        return reader.all(_LIVE_NODES, cluster=cluster_id)
    finally:
        reader.close()


def view_of(row: NodeRow) -> LiveNode:
    return LiveNode(*(getattr(row, name) for name in LiveNode._fields))


_NODES = cast(Table, NodeRow.__table__)
WRITABLE = ("provider_state", "flavour_state", "phase", "status")
_UPDATES: dict[tuple[str, ...], Update] = {}


def _update_of(columns: tuple[str, ...]) -> Update:
    found = _UPDATES.get(columns)
    if found is None:
        values = {c: bindparam(f"new_{c}", type_=_NODES.c[c].type) for c in columns}
        found = _UPDATES[columns] = (
            update(_NODES).where(_NODES.c.id == bindparam("node_id")).values(**values)
        )
    return found


class NodeWrites:
    """Plain changes of many nodes, written together (`write`)."""

    def __init__(self) -> None:
        self._by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def change(self, node: LiveNode, **changes: Any) -> LiveNode:
        """Record `changes` (columns of `WRITABLE`) of `node`; the node as they leave it."""
        if not changes:
            return node
        columns = tuple(c for c in WRITABLE if c in changes)
        params = {f"new_{c}": changes[c] for c in columns}
        self._by_columns.setdefault(columns, []).append({"node_id": node.id, **params})
        return node._replace(**changes)

    def write(self, session: Session) -> None:
        for columns, params in self._by_columns.items():
            session.execute(_update_of(columns), params)
        self._by_columns.clear()

"""A cluster's live nodes as a controller pass's act reads them: columns, not ORM rows.

The act of a cluster pass (`cluster_act`) only reads its nodes; for a cluster of
thousands, building and tracking an ORM row per node cost more than the pass's driver
calls. `live_nodes` reads the columns the act uses as `NodeView`s, in one prepared
statement on the snapshot's own connection and transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from clusterplane.db.prepared import Prepared, reader_of
from clusterplane.db.rows import NodeRow


class NodeView(NamedTuple):
    """A live node: what the act decides on and tells the drivers."""

    id: str
    role: str
    ordinal: int
    node_name: str
    instance_id: str
    host_id: str | None
    host_name: str
    phase: str
    num_gpus: int
    preemptible: bool
    marked_for_deletion: bool
    drain_until: datetime | None
    health: str
    provider_state: dict[str, Any] | None
    flavour_state: dict[str, Any] | None


_LIVE_NODES = Prepared(
    select(*(getattr(NodeRow, name) for name in NodeView._fields))
    .where(NodeRow.cluster_id == bindparam("cluster"), NodeRow.deleted_at.is_(None))
    .order_by(NodeRow.role, NodeRow.ordinal),
    NodeView,
)


def live_nodes(session: Session, cluster_id: str) -> list[NodeView]:
    """The cluster's live nodes, control plane first, each role by ordinal."""
    reader = reader_of(session)
    try:
        return reader.all(_LIVE_NODES, cluster=cluster_id)
    finally:
        reader.close()

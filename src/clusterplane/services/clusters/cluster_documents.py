"""Each cluster's response, stored rendered, so reading it is one statement.

What it owns: the `cluster_documents` table (a cluster's encoded response without its
kube_config, the revision it shows and until when it holds) and the three ways to use it:

* reading (`read_one` for GET, `read_many` for a page of a list): the cluster's row, its
  revision and its document in one statement; a document at the current revision that
  still holds is the answer, with the kube_config unsealed and added; any other cluster
  is read and rendered on the spot from `cluster_views` (never stored by a read), so an
  answer is never older than the database.
* storing (`store`): an update stores what it rendered for its response, in its own
  transaction (a create does not: the pass it nudges changes the cluster at once).
* refreshing (`behind`, `render_and_store`): the documents controller renders, in
  batches, the clusters whose document is behind (controllers/documents.py); replicas
  on one PostgreSQL database split them between them (advisory locks, `_take`).

Invariants:
    * `cluster_revisions.revision` moves with every write to anything a response shows:
      the database's triggers bump it (migration 0017), whatever code or SQL wrote, so a
      document whose revision is the current one shows the current state.
    * A document is labelled with a revision read no later than what it shows (both in
      one snapshot, or the revision first), so a label is never newer than its content.
    * Lifecycle events leave a response 72 hours after they happened, so a document with
      events holds until its oldest event leaves (`valid_until`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import String, bindparam, delete, func, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from clusterplane.db.engine import transaction
from clusterplane.db.prepared import Prepared, Reader, read_once, read_snapshot, reader_of
from clusterplane.db.rows import ClusterDocumentRow, ClusterRevisionRow, ClusterRow
from clusterplane.errors import NotFound
from clusterplane.services.access.auth import Caller
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.clusters import cluster_wire
from clusterplane.services.clusters.cluster_views import (
    EVENT_RETENTION,
    ONE_OF,
    ClusterDetail,
    ClusterView,
    load_details,
    naive,
)

RENDER_LOCK = "cluster-document:"  # the advisory lock of a cluster's render: this + its id


class Stored(NamedTuple):
    """A cluster's row as a read needs it, its revision and its stored document (None
    where it has none)."""

    id: str
    project_id: str
    phase: str
    control_plane_ready: bool
    kube_config: str
    deleted_at: datetime | None
    revision: int | None
    document_revision: int | None
    body: bytes | None
    valid_until: datetime | None  # naive UTC

    def holds(self, now: datetime) -> bool:
        """The stored document shows the cluster as it is now."""
        return (
            self.body is not None
            and self.document_revision == self.revision
            and (self.valid_until is None or self.valid_until > now.replace(tzinfo=None))
        )


@dataclass(frozen=True)
class Rendered:
    cluster_id: str
    body: bytes
    valid_until: datetime | None


_R = ClusterRevisionRow
_D = ClusterDocumentRow
_STORED = select(
    ClusterRow.id,
    ClusterRow.project_id,
    ClusterRow.phase,
    ClusterRow.control_plane_ready,
    ClusterRow.kube_config,
    ClusterRow.deleted_at,
    _R.revision,
    _D.revision.label("document_revision"),
    _D.body,
    naive(_D.valid_until),
).select_from(
    ClusterRow.__table__.outerjoin(_R, _R.cluster_id == ClusterRow.id).outerjoin(
        _D, _D.cluster_id == ClusterRow.id
    )
)
STORED_ONE: Prepared[Stored] = Prepared(_STORED.where(ClusterRow.id == bindparam("id")), Stored)
_MANY = {
    dialect: Prepared(_STORED.where(one_of(ClusterRow.id)), Stored)
    for dialect, one_of in ONE_OF.items()
}
_REVISIONS: dict[str, Prepared[tuple[str, int]]] = {
    dialect: Prepared(select(_R.cluster_id, _R.revision).where(one_of(_R.cluster_id)), tuple)
    for dialect, one_of in ONE_OF.items()
}
_BEHIND: Prepared[tuple[str, int]] = Prepared(
    select(_R.cluster_id, _R.revision)
    .where(_R.rendered != _R.revision)
    .order_by(_R.cluster_id)
    .limit(bindparam("limit")),
    tuple,
)
_EXPIRED: Prepared[tuple[str, int]] = Prepared(
    select(_D.cluster_id, _D.revision)
    .where(_D.valid_until <= bindparam("now"))
    .order_by(_D.valid_until)
    .limit(bindparam("limit")),
    tuple,
)


def answer_stored(
    found: Sequence[Stored], caller: Caller, cluster_id: str, *, now: datetime, box: SecretBox
) -> tuple[str, bytes] | None:
    """The project and response of one cluster from what `STORED_ONE` found: NotFound
    unless it is live and the caller may see it, None if its document is behind."""
    if not found or found[0].deleted_at is not None or not caller.can_see(found[0].project_id):
        raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
    stored = found[0]
    if stored.body is None or not stored.holds(now):
        return None
    return stored.project_id, _respond(stored, stored.body, box)


def read_one(
    sessions: sessionmaker[Session],
    caller: Caller,
    cluster_id: str,
    *,
    now: datetime,
    box: SecretBox,
    found: Sequence[Stored] | None = None,
) -> tuple[str, bytes]:
    """The project and response of one live cluster the caller may see; NotFound else.
    `found`: what `STORED_ONE` read already (its document behind), not read again."""
    if found is None:
        found = read_once(sessions, STORED_ONE, id=cluster_id)
        answer = answer_stored(found, caller, cluster_id, now=now, box=box)
        if answer is not None:
            return answer
    with read_snapshot(sessions) as reader:
        details = load_details(reader, [cluster_id], now=now)
    if not details:  # deleted since the first read
        raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
    return details[0].row.project_id, _respond(details[0].row, render(details[0]).body, box)


def read_many(reader: Reader, ids: Sequence[str], *, now: datetime, box: SecretBox) -> list[bytes]:
    """The responses of the live clusters among `ids`, in their order."""
    rows = [s for s in reader.all(_MANY[_dialect(reader)], ids=list(ids)) if s.deleted_at is None]
    behind = [s.id for s in rows if not s.holds(now)]
    rendered = {r.cluster_id: r.body for r in map(render, load_details(reader, behind, now=now))}
    by_id = {s.id: s for s in rows}
    bodies = []
    for cluster_id in ids:
        stored = by_id.get(cluster_id)
        body = rendered.get(cluster_id) if stored is None or not stored.holds(now) else stored.body
        if stored is not None and body is not None:
            bodies.append(_respond(stored, body, box))
    return bodies


def _respond(row: Stored | ClusterView, document: bytes, box: SecretBox) -> bytes:
    kube_config = cluster_wire.kube_config_of(
        row.id, row.phase, row.control_plane_ready, row.kube_config, box
    )
    return cluster_wire.with_kube_config(document, kube_config)


def render(detail: ClusterDetail) -> Rendered:
    events = detail.lifecycle_events
    oldest = min((e.timestamp for e in events), default=None)
    return Rendered(
        detail.row.id,
        cluster_wire.encode(cluster_wire.document(detail)),
        None if oldest is None else (oldest + EVENT_RETENTION).replace(tzinfo=UTC),
    )


def respond_after_write(
    session: Session, cluster_id: str, *, now: datetime, box: SecretBox, keep: bool = True
) -> bytes:
    """The response of a write, read in its own transaction (so it shows what it wrote),
    and stored as the cluster's document unless `keep` is False: a new cluster changes in
    the controllers' pass that its create nudges, so its first document would be behind
    before any read; the refresher stores one once the cluster is quiet."""
    reader = reader_of(session)
    revisions = dict(reader.all(_REVISIONS[_dialect(reader)], ids=[cluster_id])) if keep else {}
    details = load_details(reader, [cluster_id], now=now)
    if not details:
        raise NotFound(f"cluster '{cluster_id}' not found", param="cluster_id")
    rendered = render(details[0])
    if keep:
        store(session, revisions, [rendered])
    return _respond(details[0].row, rendered.body, box)


def behind(reader: Reader, *, now: datetime, limit: int) -> dict[str, int]:
    """Clusters whose document is behind their revision or has expired, with the revision
    each is at (at most `limit` of each kind)."""
    found = dict(reader.all(_BEHIND, limit=limit))
    for cluster_id, revision in reader.all(_EXPIRED, now=now, limit=limit):
        found.setdefault(cluster_id, revision)
    return found


# Replicas on one PostgreSQL database split the clusters to render: each renders those it
# takes a transaction-level advisory lock on, and leaves the clusters another replica is
# rendering at that moment (a lock keyed by the cluster id; it never blocks a writer).
_IDS = func.unnest(bindparam("ids", type_=ARRAY(String))).table_valued("value").render_derived()
_TAKE: Prepared[tuple[str]] = Prepared(
    select(_IDS.c.value).where(
        func.pg_try_advisory_xact_lock(
            func.hashtextextended(literal_column(f"'{RENDER_LOCK}'", String) + _IDS.c.value, 0)
        )
    ),
    tuple,
)


def _take(reader: Reader, ids: Sequence[str]) -> list[str]:
    """The clusters of `ids` no other replica is rendering now (held until the snapshot
    ends); every one of them on SQLite, whose writers are one process's."""
    if reader.dialect.name != "postgresql":
        return list(ids)
    taken = {cluster_id for (cluster_id,) in reader.all(_TAKE, ids=list(ids))}
    return [cluster_id for cluster_id in ids if cluster_id in taken]


def render_and_store(sessions: sessionmaker[Session], ids: Sequence[str], *, now: datetime) -> int:
    """Render the documents of `ids` in one snapshot and store them, but those another
    replica is rendering; returns how many were rendered."""
    with read_snapshot(sessions) as reader:
        ids = _take(reader, ids)
        if not ids:
            return 0
        revisions = dict(reader.all(_REVISIONS[_dialect(reader)], ids=list(ids)))
        rendered = [render(d) for d in load_details(reader, ids, now=now)]
    with transaction(sessions) as session:
        store(session, revisions, rendered)
    return len(rendered)


def store(session: Session, revisions: dict[str, int], rendered: Sequence[Rendered]) -> None:
    """Each rendered document at the revision it was rendered at (unless a newer one is
    stored); a cluster of `revisions` with nothing rendered (deleted) loses its document.
    Each is marked rendered only while its revision is still that one.

    Rows are locked in the order every writer locks them: a cluster's revision (which
    the triggers of any write to it bump first), then its document, clusters in id order.
    A writer that bumped a revision and then stores its own response's document, or
    another replica's refresher, is waited for, never deadlocked with."""
    dialect = session.get_bind().dialect.name
    ids = sorted(revisions)
    if not ids:
        return
    session.connection().execute(
        update(_R)
        .where(_R.cluster_id == bindparam("c"), _R.revision == bindparam("r"))
        .values(rendered=bindparam("r")),
        [{"c": cluster_id, "r": revisions[cluster_id]} for cluster_id in ids],
    )
    by_id = {doc.cluster_id: doc for doc in rendered}
    documents = [
        {
            "cluster_id": cluster_id,
            "revision": revisions[cluster_id],
            "body": by_id[cluster_id].body,
            "valid_until": by_id[cluster_id].valid_until,
        }
        for cluster_id in ids
        if cluster_id in by_id
    ]
    if documents:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        upsert = insert(_D)
        session.execute(
            upsert.on_conflict_do_update(
                index_elements=[_D.cluster_id],
                set_={k: upsert.excluded[k] for k in ("revision", "body", "valid_until")},
                where=_D.revision <= upsert.excluded.revision,
            ),
            documents,
        )
    gone = [cluster_id for cluster_id in ids if cluster_id not in by_id]
    if gone:
        session.execute(delete(_D).where(_D.cluster_id.in_(gone)))


def _dialect(reader: Reader) -> str:
    return reader.dialect.name if reader.dialect.name in ONE_OF else "sqlite"

"""Stored cluster responses: every write to what a response shows moves the cluster's
revision (the database's triggers), a read never serves a document behind it, and the
refresher stores documents once their cluster is quiet."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from clusterplane.api.read_cache import ReadCache
from clusterplane.db.engine import transaction
from clusterplane.db.prepared import watch_statements
from clusterplane.db.rows import (
    ClusterDocumentRow,
    ClusterRevisionRow,
    NodeLifecycleEventRow,
    NodeRow,
)
from clusterplane.services.clusters import cluster_documents
from clusterplane.services.clusters.cluster_documents import RENDER_LOCK
from clusterplane.services.clusters.cluster_views import (
    ClusterView,
    LifecycleEventView,
    NodeView,
    RemediationView,
    VolumeView,
)
from tests.support.clusters import cluster_body, store_documents
from tests.support.engine import Engine

CREATE = cluster_body(cluster_name="docs", num_gpus=16)
HOST_FACTS = ("ephemeral_storage", "ib_hca_count", "ib_hca_type", "nvswitch_count", "nvswitch_type")


@pytest.fixture
def ready(engine: Engine) -> tuple[Engine, str]:
    """A Ready cluster whose document is stored, on an engine without a read cache."""
    engine.app.api.state.cp.reads = ReadCache(0)
    reply = engine.client.post("/v1/compute/clusters", json=CREATE, headers=engine.headers())
    assert reply.status_code == 200, reply.text
    engine.advance(3 * 3600, step=60)
    cluster_id = reply.json()["cluster_id"]
    store_documents(engine)
    assert _revision(engine, cluster_id) == _document_revision(engine, cluster_id)
    return engine, cluster_id


def _revision(engine: Engine, cluster_id: str) -> int:
    with transaction(engine.app.sessions) as session:
        return session.get_one(ClusterRevisionRow, cluster_id).revision


def _document_revision(engine: Engine, cluster_id: str) -> int | None:
    with transaction(engine.app.sessions) as session:
        doc = session.get(ClusterDocumentRow, cluster_id)
        return None if doc is None else doc.revision


def _get(engine: Engine, cluster_id: str) -> tuple[dict[str, Any], int]:
    seen: list[str] = []
    with watch_statements(engine.app.engine, seen.append):
        reply = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert reply.status_code == 200, reply.text
    return reply.json(), len(seen)


def _set(engine: Engine, table: str, column: str, where: str, **params: Any) -> None:
    """Rewrite `column` with its own value (the update names it; triggers fire on that)."""
    with engine.app.engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET {column} = {column} WHERE {where}"), params)


def _presented(view: type, *, besides: tuple[str, ...] = ()) -> list[str]:
    return [f for f in view._fields if f not in ("id", *besides)]


def test_every_column_a_response_shows_moves_the_revision_when_written(ready):
    engine, cluster_id = ready
    with transaction(engine.app.sessions) as session:
        node = session.scalars(
            select(NodeRow).where(NodeRow.cluster_id == cluster_id, NodeRow.host_id.is_not(None))
        ).first()
        assert node is not None
        node_id, host_id = node.id, node.host_id
    writes = [
        *(("clusters", c, "id = :c") for c in _presented(ClusterView)),
        *(("nodes", c, "id = :n") for c in _presented(NodeView, besides=HOST_FACTS)),
        ("nodes", "host_id", "id = :n"),
        *(("hosts", c, "id = :h") for c in HOST_FACTS),
        *(
            ("cluster_phase_transitions", c, "cluster_id = :c")
            for c in ("phase", "transition_time")
        ),
        *(("node_phase_transitions", c, "node_row_id = :n") for c in ("phase", "transition_time")),
    ]
    for table, column, where in writes:
        before = _revision(engine, cluster_id)
        _set(engine, table, column, where, c=cluster_id, n=node_id, h=host_id)
        assert _revision(engine, cluster_id) > before, f"{table}.{column}"


def test_lifecycle_events_volumes_and_remediations_move_the_revision(ready):
    engine, cluster_id = ready
    now = engine.clock.now()
    before = _revision(engine, cluster_id)
    with transaction(engine.app.sessions) as session:
        session.add(
            NodeLifecycleEventRow(
                cluster_id=cluster_id, node_name="n", reason="Test", message="m", timestamp=now
            )
        )
    assert _revision(engine, cluster_id) == before + 1
    for field in _presented(LifecycleEventView, besides=("cluster_id",)):
        before = _revision(engine, cluster_id)
        _set(engine, "node_lifecycle_events", field, "cluster_id = :c", c=cluster_id)
        assert _revision(engine, cluster_id) > before, field
    # The columns of the other parts are named in the migration's triggers.
    with engine.app.engine.connect() as conn:
        if engine.app.engine.dialect.name == "sqlite":
            sql = " ".join(
                conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'trigger'")).scalars()
            )
        else:
            sql = " ".join(
                conn.execute(
                    text("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal")
                ).scalars()
            )
    for table, view in (("volumes", VolumeView), ("remediations", RemediationView)):
        update_of = sql.split(f"cp_{table}_update AFTER UPDATE OF ", 1)[1].split(" ON ", 1)[0]
        named = {c.strip() for c in update_of.split(",")}
        assert set(_presented(view)) - {"cluster_id"} <= named, table


def test_columns_no_response_shows_leave_the_revision_and_document_alone(ready):
    engine, cluster_id = ready
    before = _revision(engine, cluster_id)
    _set(engine, "clusters", "lease_owner", "id = :c", c=cluster_id)
    _set(engine, "clusters", "next_reconcile_at", "id = :c", c=cluster_id)
    _set(engine, "nodes", "provider_state", "cluster_id = :c", c=cluster_id)
    assert _revision(engine, cluster_id) == before
    _, statements = _get(engine, cluster_id)
    assert statements == 1


def test_a_get_shows_a_write_the_refresher_has_not_rendered_yet(ready):
    engine, cluster_id = ready
    stored, statements = _get(engine, cluster_id)
    assert statements == 1
    with engine.app.engine.begin() as conn:
        conn.execute(
            text("UPDATE nodes SET status = 'Cordoned' WHERE cluster_id = :c AND num_gpus > 0"),
            {"c": cluster_id},
        )
    fresh, statements = _get(engine, cluster_id)
    assert statements > 1  # read and rendered on the spot
    assert {n["status"] for n in fresh["gpu_worker_nodes"]} == {"Cordoned"}
    assert {n["status"] for n in stored["gpu_worker_nodes"]} != {"Cordoned"}
    store_documents(engine)
    again, statements = _get(engine, cluster_id)
    assert statements == 1
    assert again == fresh
    assert again["kube_config"] and again["kube_config"] == stored["kube_config"]


def test_a_stored_document_drops_a_lifecycle_event_once_it_is_72_hours_old(ready):
    engine, cluster_id = ready
    with transaction(engine.app.sessions) as session:
        session.add(
            NodeLifecycleEventRow(
                cluster_id=cluster_id,
                node_name="gpu-dp-0",
                reason="Aged",
                message="m",
                timestamp=engine.clock.now(),
            )
        )
    store_documents(engine)
    shown, statements = _get(engine, cluster_id)
    assert statements == 1
    assert "Aged" in {e["reason"] for e in shown["node_lifecycle_events"]}
    engine.clock.advance(timedelta(hours=72, seconds=1).total_seconds())
    later, statements = _get(engine, cluster_id)
    assert "Aged" not in {e["reason"] for e in later["node_lifecycle_events"]}
    store_documents(engine)
    stored, statements = _get(engine, cluster_id)
    assert statements == 1
    assert stored == later


def test_a_deleted_cluster_is_not_found_and_loses_its_document(ready):
    engine, cluster_id = ready
    reply = engine.client.delete(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert reply.status_code == 200
    engine.advance(3600, step=60)
    store_documents(engine)
    reply = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert reply.status_code == 404
    assert reply.json()["error"]["code"]
    assert _document_revision(engine, cluster_id) is None
    assert (
        cluster_id not in engine.client.get("/v1/compute/clusters", headers=engine.headers()).text
    )


def test_a_create_answers_without_storing_a_document_the_next_pass_would_outdate(
    engine: Engine,
):
    reply = engine.client.post("/v1/compute/clusters", json=CREATE, headers=engine.headers())
    assert reply.status_code == 200, reply.text
    cluster_id = reply.json()["cluster_id"]
    assert _document_revision(engine, cluster_id) is None
    shown, _ = _get(engine, cluster_id)
    assert shown == reply.json()
    store_documents(engine)
    assert _document_revision(engine, cluster_id) == _revision(engine, cluster_id)


def test_a_cluster_another_replica_is_rendering_is_left_to_it(ready):
    engine, held = ready
    if engine.app.engine.dialect.name != "postgresql":
        pytest.skip("replicas share PostgreSQL; SQLite's writers are one process's")
    reply = engine.client.post("/v1/compute/clusters", json=CREATE, headers=engine.headers())
    free = reply.json()["cluster_id"]
    _set(engine, "clusters", "name", "id = :c", c=held)
    lock = {"prefix": RENDER_LOCK, "c": held}
    key = "hashtextextended(:prefix || :c, 0)"
    with engine.app.engine.connect() as other_replica:
        other_replica.execute(text(f"SELECT pg_advisory_lock({key})"), lock)
        store_documents(engine)
        assert _document_revision(engine, free) == _revision(engine, free)
        assert (_document_revision(engine, held) or 0) < _revision(engine, held)
        other_replica.execute(text(f"SELECT pg_advisory_unlock({key})"), lock)
        other_replica.commit()
    store_documents(engine)
    assert _document_revision(engine, held) == _revision(engine, held)


def test_a_refresher_storing_a_document_waits_behind_a_writer_of_that_cluster(ready):
    """A write bumps its cluster's revision (a trigger) and then stores its response's
    document; a refresher storing the same cluster meanwhile must queue behind it, not
    hold the document while it waits for the revision (a deadlock PostgreSQL breaks by
    failing one of the two)."""
    engine, cluster_id = ready
    if engine.app.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers never wait on each other's row locks")
    _set(engine, "clusters", "name", "id = :c", c=cluster_id)  # the document is behind
    failures: list[BaseException] = []

    def refresh() -> None:
        try:
            cluster_documents.render_and_store(
                engine.app.sessions, [cluster_id], now=engine.clock.now()
            )
        except BaseException as exc:  # reported to the test thread
            failures.append(exc)

    with engine.app.engine.connect() as writer:
        writer.execute(text("UPDATE clusters SET name = name WHERE id = :c"), {"c": cluster_id})
        refresher = threading.Thread(target=refresh)
        refresher.start()
        _wait_for_a_lock_wait(engine)
        writer.execute(
            text("UPDATE cluster_documents SET body = body WHERE cluster_id = :c"),
            {"c": cluster_id},
        )
        writer.commit()
    refresher.join(timeout=30)
    assert not refresher.is_alive()
    assert failures == []
    store_documents(engine)
    assert _document_revision(engine, cluster_id) == _revision(engine, cluster_id)


def _wait_for_a_lock_wait(engine: Engine) -> None:
    """Until a session of the database waits for a row lock (the refresher's)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.app.engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return
        time.sleep(0.02)
    raise AssertionError("the refresher never waited for the writer's lock")

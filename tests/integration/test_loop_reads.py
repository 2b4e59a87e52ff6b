"""GET of a cluster reads its stored document on the event loop (SQLite files), and gives
way to a worker thread whenever that read cannot be answered at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from clusterplane.api.inflight import InFlight
from clusterplane.api.read_cache import ReadCache
from clusterplane.api.routers import clusters as clusters_router
from clusterplane.db.loop_reads import LoopReader
from clusterplane.services.clusters.cluster_documents import STORED_ONE
from tests.support.clusters import cluster_body, store_documents
from tests.support.engine import Engine
from tests.support.tenants import new_tenant

CREATE = cluster_body(cluster_name="loop")


@pytest.fixture
def hops(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The worker-thread hand-offs GETs of clusters make (a create's own is not one)."""
    engine.app.api.state.cp.reads = ReadCache(0)
    seen: list[str] = []
    real = clusters_router.run_in_threadpool

    async def counted(function: Any, *args: Any) -> Any:
        if function.__name__ != "_create":
            seen.append(function.__name__)
        return await real(function, *args)

    monkeypatch.setattr(clusters_router, "run_in_threadpool", counted)
    return seen


def _sqlite_only(engine: Engine) -> None:
    if engine.app.engine.dialect.name != "sqlite":
        pytest.skip("reads on the loop are for SQLite files")


def test_a_cluster_with_a_stored_document_is_answered_without_a_worker_thread(
    engine: Engine, hops: list[str]
):
    _sqlite_only(engine)
    created = engine.client.post("/v1/compute/clusters", json=CREATE, headers=engine.headers())
    assert created.status_code == 200, created.text
    cluster_id = created.json()["cluster_id"]
    store_documents(engine)
    reply = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert reply.status_code == 200
    assert reply.json() == created.json()
    assert hops == []
    with engine.app.engine.begin() as conn:  # a write the refresher has not rendered yet
        conn.execute(text("UPDATE clusters SET name = 'renamed' WHERE id = :c"), {"c": cluster_id})
    reply = engine.client.get(f"/v1/compute/clusters/{cluster_id}", headers=engine.headers())
    assert reply.status_code == 200
    assert reply.json()["cluster_name"] == "renamed"
    assert hops == ["_retrieve"]


def test_an_unknown_or_foreign_cluster_is_a_404_from_the_loop_too(engine: Engine, hops: list[str]):
    _sqlite_only(engine)
    reply = engine.client.get("/v1/compute/clusters/nope", headers=engine.headers())
    assert reply.status_code == 404
    assert reply.json()["error"]["param"] == "cluster_id"
    assert hops == []


def test_the_loop_reader_answers_none_instead_of_waiting_for_its_connection(engine: Engine):
    _sqlite_only(engine)
    reader = LoopReader(engine.app.engine)
    try:
        assert reader.all(STORED_ONE, id="nope") == []
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with reader._lock:
                held.set()
                release.wait(5)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(5)
        assert reader.all(STORED_ONE, id="nope") is None
        release.set()
        holder.join()
    finally:
        reader.close()


def test_a_read_the_loop_connection_cannot_answer_gives_way(tmp_path: Path):
    empty = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no schema: the read fails
    reader = LoopReader(empty)
    try:
        assert reader.enabled
        assert reader.all(STORED_ONE, id="any") is None
    finally:
        reader.close()
        empty.dispose()


def test_postgresql_and_in_memory_databases_are_never_read_on_the_loop(engine: Engine):
    memory = create_engine("sqlite://")
    assert LoopReader(memory).all(STORED_ONE, id="any") is None
    memory.dispose()
    if engine.app.engine.dialect.name == "postgresql":
        assert LoopReader(engine.app.engine).all(STORED_ONE, id="any") is None


def test_the_get_route_bounds_each_keys_requests_in_flight_and_serves_other_tenants(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    """A tenant whose GETs of a behind document hold every slot of its key gets 429 for
    the next one; another tenant's GET is served meanwhile."""
    engine.app.api.state.cp.reads = ReadCache(0)
    engine.app.api.state.cp.inflight = InFlight(1)
    _, holder_key = new_tenant(engine, "holder")
    _, other_key = new_tenant(engine, "other")
    clusters = {}
    for name, key in (("held", holder_key), ("other", other_key)):
        reply = engine.client.post(
            "/v1/compute/clusters",
            json=cluster_body(cluster_name=name),
            headers=engine.headers(key),
        )
        assert reply.status_code == 200, reply.text
        clusters[name] = reply.json()["cluster_id"]
    with engine.app.engine.begin() as conn:  # the held cluster's document is behind
        conn.execute(
            text("UPDATE clusters SET name = 'moved' WHERE id = :c"), {"c": clusters["held"]}
        )
    entered, release = threading.Event(), threading.Event()
    real = clusters_router._retrieve

    def slow(*args: Any) -> Any:
        entered.set()
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(clusters_router, "_retrieve", slow)
    answers: list[int] = []
    first = threading.Thread(
        target=lambda: answers.append(
            engine.client.get(
                f"/v1/compute/clusters/{clusters['held']}", headers=engine.headers(holder_key)
            ).status_code
        )
    )
    first.start()
    try:
        assert entered.wait(10)
        refused = engine.client.get(
            f"/v1/compute/clusters/{clusters['held']}", headers=engine.headers(holder_key)
        )
        assert refused.status_code == 429
        assert refused.json()["error"]["message"]
        served = engine.client.get(
            f"/v1/compute/clusters/{clusters['other']}", headers=engine.headers(other_key)
        )
        assert served.status_code == 200
    finally:
        release.set()
        first.join(10)
    assert answers == [200]
    again = engine.client.get(  # the slot was given back
        f"/v1/compute/clusters/{clusters['held']}", headers=engine.headers(holder_key)
    )
    assert again.status_code == 200

"""Reading clusters issues a fixed number of SQL statements, however many there are.

A cluster whose stored response is current is read in one statement with its document
(services/clusters/cluster_documents.py); one whose document is behind is read with bulk
queries (services/clusters/cluster_views.py). Either way a query per cluster or per node
(an N+1) would make the count grow with the data. The counts are taken with
SQLAlchemy's `before_cursor_execute` event on the engine and the prepared reads' own
watcher (`db.prepared.watch_statements`: they run on the DBAPI cursor, which
SQLAlchemy's events do not see), on clusters seeded as the benchmarks seed them (Ready,
with nodes on hosts).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.fleetgen import FleetShape, write_fleet
from benchmarks.seed import add_project, seed_ready_clusters
from sqlalchemy import event

from clusterplane.api.read_cache import ReadCache
from clusterplane.db.prepared import watch_statements
from tests.support.engine import Engine, make_engine

SMALL_PROJECT = "proj_ten"
# Documents stored: the cluster, its revision and its document, in one statement (the
# caller is cached); a list reads in one transaction (BEGIN) the ids of the project's
# clusters, then theirs.
GET_STATEMENTS = 1
LIST_STATEMENTS = 3
# Documents behind: also BEGIN, the clusters, their phases, lifecycle events, volumes,
# nodes, node phases and remediations.
GET_STATEMENTS_BEHIND = 9
LIST_STATEMENTS_BEHIND = 10


def _seeded(tmp_path: Path, *, documents: bool) -> Iterator[Engine]:
    """100 clusters of one worker in the default project, 10 of five in another."""
    fleet = write_fleet(
        tmp_path / "fleet.yaml", FleetShape(1, blocks=1, racks=10, hosts_per_rack=16)
    )
    for engine in make_engine(tmp_path, fleet=fleet):
        engine.app.api.state.cp.reads = ReadCache(0)  # every GET reads the database
        db = engine.app.engine
        box = engine.app.api.state.cp.secrets
        seed_ready_clusters(db, workers=[1] * 100, prefix="big", documents=documents, box=box)
        add_project(db, SMALL_PROJECT, engine.clock.now())
        seed_ready_clusters(
            db,
            project_id=SMALL_PROJECT,
            workers=[5] * 10,
            prefix="small",
            documents=documents,
            box=box,
        )
        yield engine


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Engine]:
    yield from _seeded(tmp_path, documents=True)


@pytest.fixture
def seeded_behind(tmp_path: Path) -> Iterator[Engine]:
    yield from _seeded(tmp_path, documents=False)


def statements(engine: Engine, path: str, tries: int = 3) -> tuple[int, dict]:
    """The fewest statements of `tries` reads of `path`: the caller cache holds a key for
    2 s of wall time, which a loaded machine can spend between two requests, and one
    read then also re-reads the caller."""
    counts = [_statements(engine, path) for _ in range(tries)]
    return min(counts, key=lambda counted: counted[0])


def _statements(engine: Engine, path: str) -> tuple[int, dict]:
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine.app.engine, "before_cursor_execute", count)
    try:
        with watch_statements(engine.app.engine, seen.append):
            reply = engine.client.get(path, headers=engine.headers())
    finally:
        event.remove(engine.app.engine, "before_cursor_execute", count)
    assert reply.status_code == 200, reply.text
    return len(seen), reply.json()


def _list_counts(engine: Engine) -> tuple[int, int]:
    engine.client.get("/v1/compute/clusters", headers=engine.headers())  # caches warm
    small, small_body = statements(engine, f"/v1/compute/clusters?projectId={SMALL_PROJECT}")
    big, big_body = statements(engine, "/v1/compute/clusters")
    assert len(small_body["clusters"]) == 10
    assert len(big_body["clusters"]) == 100
    return small, big


def _get_counts(engine: Engine) -> tuple[int, int]:
    listed = engine.client.get(
        f"/v1/compute/clusters?projectId={SMALL_PROJECT}", headers=engine.headers()
    ).json()["clusters"]
    one_worker = engine.client.get("/v1/compute/clusters", headers=engine.headers()).json()
    small, small_body = statements(
        engine, f"/v1/compute/clusters/{one_worker['clusters'][0]['cluster_id']}"
    )
    big, big_body = statements(engine, f"/v1/compute/clusters/{listed[0]['cluster_id']}")
    assert len(small_body["gpu_worker_nodes"]) == 1
    assert len(big_body["gpu_worker_nodes"]) == 5
    assert small_body["kube_config"] and big_body["kube_config"]  # unsealed, as in production
    return small, big


def test_a_list_of_100_stored_clusters_issues_as_many_statements_as_a_list_of_10(
    seeded: Engine,
):
    small, big = _list_counts(seeded)
    assert big == small == LIST_STATEMENTS


def test_a_get_of_one_stored_cluster_is_one_statement_whatever_its_size(seeded: Engine):
    small, big = _get_counts(seeded)
    assert big == small == GET_STATEMENTS


def test_a_list_of_100_clusters_whose_documents_are_behind_issues_a_fixed_few_statements(
    seeded_behind: Engine,
):
    small, big = _list_counts(seeded_behind)
    assert big == small
    assert big <= LIST_STATEMENTS_BEHIND


def test_a_get_of_one_cluster_whose_document_is_behind_issues_a_fixed_few_statements(
    seeded_behind: Engine,
):
    small, big = _get_counts(seeded_behind)
    assert big == small
    assert big <= GET_STATEMENTS_BEHIND

"""Reading clusters issues a fixed number of SQL statements, however many there are.

A GET of one cluster and the list of a project are read with bulk queries (services/
cluster_views.py); a query per cluster or per node (an N+1) would make the count grow with
the data. The counts are taken with SQLAlchemy's `before_cursor_execute` event on the
engine and the prepared reads' own watcher (`db.prepared.watch_statements`: they run on
the DBAPI cursor, which SQLAlchemy's events do not see), on clusters seeded as the
benchmarks seed them (Ready, with nodes on hosts).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.fleetgen import FleetShape, write_fleet
from benchmarks.seed import add_project, seed_ready_clusters
from sqlalchemy import event

from clusterplane.db.prepared import watch_statements
from tests.support.engine import Engine, make_engine

SMALL_PROJECT = "proj_ten"
# BEGIN, the cluster, its phases, lifecycle events, volumes, nodes, node phases and
# remediations (the caller is cached); a list also reads the ids of the project's clusters.
GET_STATEMENTS = 8
LIST_STATEMENTS = 9


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Engine]:
    """100 clusters of one worker in the default project, 10 of five in another."""
    fleet = write_fleet(
        tmp_path / "fleet.yaml", FleetShape(1, blocks=1, racks=10, hosts_per_rack=16)
    )
    for engine in make_engine(tmp_path, fleet=fleet):
        db = engine.app.engine
        seed_ready_clusters(db, workers=[1] * 100, prefix="big")
        add_project(db, SMALL_PROJECT, engine.clock.now())
        seed_ready_clusters(db, project_id=SMALL_PROJECT, workers=[5] * 10, prefix="small")
        yield engine


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


def test_a_list_of_100_clusters_issues_as_many_statements_as_a_list_of_10(seeded: Engine):
    seeded.client.get("/v1/compute/clusters", headers=seeded.headers())  # caches warm
    small, small_body = statements(seeded, f"/v1/compute/clusters?projectId={SMALL_PROJECT}")
    big, big_body = statements(seeded, "/v1/compute/clusters")
    assert len(small_body["clusters"]) == 10
    assert len(big_body["clusters"]) == 100
    assert big == small
    assert big <= LIST_STATEMENTS


def test_a_get_of_one_cluster_issues_a_fixed_few_statements_whatever_its_size(seeded: Engine):
    listed = seeded.client.get(
        f"/v1/compute/clusters?projectId={SMALL_PROJECT}", headers=seeded.headers()
    ).json()["clusters"]
    one_worker = seeded.client.get("/v1/compute/clusters", headers=seeded.headers()).json()
    small, small_body = statements(
        seeded, f"/v1/compute/clusters/{one_worker['clusters'][0]['cluster_id']}"
    )
    big, big_body = statements(seeded, f"/v1/compute/clusters/{listed[0]['cluster_id']}")
    assert len(small_body["gpu_worker_nodes"]) == 1
    assert len(big_body["gpu_worker_nodes"]) == 5
    assert big == small
    assert big <= GET_STATEMENTS

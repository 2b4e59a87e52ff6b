"""Prepared reads (db/prepared.py) return what SQLAlchemy's own execution returns.

Every statement the cluster views prepare is run both ways on a database that gives each
one rows: a Ready cluster scaled down (a deleted worker, its leave event) with a
remediation, a cluster with a shared volume being brought up and a deleted one, so nulls,
booleans, JSON, aware and naive timestamps all pass through the conversions.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

from sqlalchemy import select

from clusterplane.db.engine import read_transaction
from clusterplane.db.prepared import read_snapshot
from clusterplane.db.rows import ClusterRow
from clusterplane.services.clusters import cluster_views
from tests.integration.test_lifecycle import create
from tests.integration.test_remediation_execution import ready_cluster, remediate
from tests.support.engine import Engine


def _scenario(engine: Engine) -> None:
    ready = ready_cluster(engine, num_gpus=24)
    remediate(engine, ready, "REMEDIATION_MODE_REBOOT_VM")
    path = f"/v1/compute/clusters/{ready['cluster_id']}"
    scaled = engine.client.put(path, json={"num_gpus": 16}, headers=engine.headers())
    assert scaled.status_code == 200, scaled.text
    gone = create(engine, num_gpus=8)["cluster_id"]
    engine.client.delete(f"/v1/compute/clusters/{gone}", headers=engine.headers())
    engine.advance(1800, step=60)
    create(engine, shared_volume={"volume_name": "data", "size_tib": 2, "region": "test-1"})


def test_every_prepared_cluster_read_returns_what_sqlalchemy_returns(engine: Engine):
    _scenario(engine)
    with read_transaction(engine.app.sessions) as session:
        ids = list(session.scalars(select(ClusterRow.id)))
        project = session.scalars(select(ClusterRow.project_id)).first()
    params = {"ids": ids, "since": engine.clock.now() - timedelta(days=1), "project_id": project}
    prepared = cluster_views._BY_DIALECT[engine.app.engine.dialect.name]
    queries = [getattr(prepared, f.name) for f in fields(prepared)]
    queries.append(cluster_views._PROJECT_IDS)
    for query in queries:
        given = {name: params[name] for name in query.statement.compile().params}
        with read_transaction(engine.app.sessions) as session:
            expected = [tuple(row) for row in session.execute(query.statement, given)]
        with read_snapshot(engine.app.sessions) as reader:
            got = reader.all(query, **given)
        assert expected, f"the scenario leaves no rows for {query.statement}"
        assert got == expected, query.statement
        assert [list(map(type, row)) for row in got] == [list(map(type, r)) for r in expected]

"""Prepared reads and inserts (db/prepared.py) do what SQLAlchemy's own execution does.

Every statement the cluster views prepare is run both ways on a database that gives each
one rows: a Ready cluster scaled down (a deleted worker, its leave event) with a
remediation, a cluster with a shared volume being brought up and a deleted one, so nulls,
booleans, JSON, aware and naive timestamps all pass through the conversions.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError

from clusterplane.db.engine import read_transaction, transaction
from clusterplane.db.prepared import PreparedInsert, read_snapshot, reader_of
from clusterplane.db.rows import ClusterRow, NodeRow
from clusterplane.domain.enums import NodeRole
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.capacity import allocation
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


def _node(engine: Engine, cluster_id: str, ordinal: int) -> dict[str, Any]:
    with read_transaction(engine.app.sessions) as session:
        cluster = session.get_one(ClusterRow, cluster_id)
        return allocation._node_values(
            cluster,
            NodeRole.GPU_WORKER,
            ordinal,
            engine.clock.now(),
            node_id=new_uuid(),
            node_name=f"prepared-{ordinal}",
            host_id=None,
            host_name="nowhere",
            num_cpu_cores=8,
            num_gpus=8,
            memory_gib=1.5,
            networks=["10.0.0.1/32"],
            slurm_worker_hostname=None,
            drain_until=engine.clock.now() + timedelta(hours=1),
        )


def test_a_prepared_insert_writes_what_a_core_insert_writes(engine: Engine):
    cluster_id = create(engine, num_gpus=8)["cluster_id"]
    by_core, prepared = _node(engine, cluster_id, 100), _node(engine, cluster_id, 101)
    table = cast(Table, NodeRow.__table__)
    with transaction(engine.app.sessions) as session:
        session.execute(insert(table), [by_core])
        reader_of(session).insert(PreparedInsert(table), [prepared])
    with read_transaction(engine.app.sessions) as session:
        rows = {
            row.id: row._asdict()
            for row in session.execute(select(table).where(table.c.ordinal >= 100))
        }
    differ = ("id", "instance_id", "ordinal", "node_name")
    written = [
        {k: v for k, v in rows[n["id"]].items() if k not in differ} for n in (by_core, prepared)
    ]
    assert written[0] == written[1]
    assert written[1]["networks"] == ["10.0.0.1/32"]
    assert written[1]["preemptible"] is False


def test_a_driver_error_of_a_prepared_statement_is_raised_as_sqlalchemy_raises_it(
    engine: Engine,
):
    cluster_id = create(engine, num_gpus=8)["cluster_id"]
    node = _node(engine, cluster_id, 100)
    table = cast(Table, NodeRow.__table__)
    with pytest.raises(IntegrityError), transaction(engine.app.sessions) as session:
        reader_of(session).insert(PreparedInsert(table), [node, node])

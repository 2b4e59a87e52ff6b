"""One placement path for creates, scale-ups and repairs, decided on a kept index and
settled by the database's conditional claim.

The kept index saves reading every free host per request; these tests pin down what it
may never cost: a host held by a capacity pool (even one another replica created a moment
ago) going to a general cluster, a pool's hosts staying out of general capacity after its
window ends, or a claim walking the fleet instead of looking its hosts up by key.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, update

from clusterplane.db.engine import transaction
from clusterplane.db.rows import CapacityPoolRow, ClusterRow, HostRow
from clusterplane.domain.enums import HostState
from clusterplane.errors import CapacityUnavailable
from clusterplane.services.capacity import allocation
from tests.integration.test_capacity_pools import make_pool, post, tenant
from tests.support.databases import backend
from tests.support.engine import Engine

TEST_1_H100 = [f"test1-r0{r}-0{i}" for r in range(1, 5) for i in range(1, 5)]


def _free_general(engine: Engine) -> set[str]:
    owners = engine.host_owners()
    return {name for name in TEST_1_H100 if owners.get(name) is None}


def test_a_pool_another_replica_just_created_is_honoured_although_this_one_kept_its_index(
    engine: Engine,
):
    _, key = tenant(engine, "alpha")
    # A first create builds and keeps the region's index here.
    first = post(engine, key, num_gpus=8)
    assert first.status_code == 200, first.text
    # Another replica (straight in the database, so this process is not told) puts every
    # free host of the region into a pool of another project that is live now.
    now = engine.clock.now()
    with transaction(engine.app.sessions) as session:
        session.execute(
            insert(CapacityPoolRow).values(
                id="pool-elsewhere",
                name="elsewhere",
                region="test-1",
                gpu_type="H100_SXM",
                project_id=None,
                organization_id=None,
                starts_at=now,
                ends_at=now + timedelta(days=1),
                created_at=now,
                deleted_at=None,
            )
        )
        session.execute(
            update(HostRow)
            .where(HostRow.region == "test-1", HostRow.cluster_id.is_(None))
            .values(capacity_pool_id="pool-elsewhere")
        )
    cluster_id = first.json()["cluster_id"]
    # A repair (or a controller's claim) asks for one more host: the kept index still
    # offers the pooled hosts, the claim refuses them, the fresh read finds none.
    with pytest.raises(CapacityUnavailable), transaction(engine.app.sessions) as session:
        cluster = session.get(ClusterRow, cluster_id)
        assert cluster is not None
        allocation.allocate_hosts(session, cluster, 1, engine.clock.now())
    # A create is refused as well (its booking cannot be honoured either).
    refused = post(engine, key, cluster_name="second", num_gpus=8)
    assert refused.status_code == 409, refused.text
    owners = engine.host_owners()
    assert {owners.get(h) for h in TEST_1_H100} == {None, cluster_id}


def test_a_pools_hosts_join_general_capacity_when_its_window_ends_with_the_index_kept(
    engine: Engine,
):
    alpha, _ = tenant(engine, "alpha")
    _, beta_key = tenant(engine, "beta")
    make_pool(engine, alpha, hours=1)  # rack r01 of test-1: 4 hosts
    # Beta fills the general hosts (12 of them), keeping the index warm.
    filled = post(engine, beta_key, cluster_name="fill", num_gpus=8 * 8)
    assert filled.status_code == 200, filled.text
    assert post(engine, beta_key, cluster_name="more", num_gpus=8 * 4).status_code == 200
    assert _free_general(engine) == {f"test1-r01-0{i}" for i in range(1, 5)}
    early = post(engine, beta_key, cluster_name="early", num_gpus=8)
    assert early.status_code == 409, early.text
    engine.advance(3600 + 5)
    late = post(engine, beta_key, cluster_name="late", num_gpus=8)
    assert late.status_code == 200, late.text
    owners = engine.host_owners()
    assert next(h for h, owner in owners.items() if owner == late.json()["cluster_id"]) in {
        f"test1-r01-0{i}" for i in range(1, 5)
    }


def test_a_repair_and_a_create_never_get_the_same_host_from_the_kept_index(engine: Engine):
    _, key = tenant(engine, "alpha")
    assert post(engine, key, cluster_name="full", num_gpus=8 * 8).status_code == 200
    created = post(engine, key, num_gpus=8 * 7)  # the other fabric, one host left
    assert created.status_code == 200, created.text
    cluster_id = created.json()["cluster_id"]
    [spare] = _free_general(engine)
    with transaction(engine.app.sessions) as session:
        cluster = session.get(ClusterRow, cluster_id)
        assert cluster is not None
        [claimed] = allocation.allocate_hosts(session, cluster, 1, engine.clock.now())
        assert claimed.name == spare
        # In the same transaction, nothing is left for anyone else: no double hand-out.
        with pytest.raises(CapacityUnavailable):
            allocation.allocate_hosts(session, cluster, 1, engine.clock.now())
    owners = engine.host_owners()
    assert owners[spare] == cluster_id
    assert post(engine, key, cluster_name="late", num_gpus=8).status_code == 409


@pytest.mark.skipif(backend() != "sqlite", reason="SQLite's query planner")
@pytest.mark.parametrize("count", [1, 4, 9, 64])
def test_the_host_claim_looks_its_hosts_up_by_key_however_many_it_claims(
    engine: Engine, count: int
):
    claims: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("UPDATE hosts SET state"):
            claims.append((statement, params))

    event.listen(engine.app.engine, "before_cursor_execute", capture)
    try:
        with pytest.raises(CapacityUnavailable), transaction(engine.app.sessions) as session:
            cluster = ClusterRow(id="c", region="test-1", gpu_type="H100_SXM")
            ids = [f"no-such-host-{n}" for n in range(count)]
            allocation.claim_hosts(session, cluster, ids, engine.clock.now())
    finally:
        event.remove(engine.app.engine, "before_cursor_execute", capture)
    statement, params = claims[0]  # then the undo of the (empty) partial claim
    with engine.app.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
        conn.rollback()
    steps = [str(row[-1]) for row in plan]
    assert any("hosts USING INDEX sqlite_autoindex_hosts_1 (id=?)" in s for s in steps), steps


class _Undo(Exception):
    """Raised to roll a test's transaction back."""


def test_claimed_hosts_that_were_loaded_earlier_in_the_transaction_are_read_again(
    engine: Engine,
):
    cluster_id = post(engine, tenant(engine, "alpha")[1], num_gpus=8).json()["cluster_id"]
    claimed_id = ""
    with pytest.raises(_Undo), transaction(engine.app.sessions) as session:
        free = [
            h
            for h in session.query(HostRow).filter(HostRow.region == "test-1")
            if h.cluster_id is None
        ]
        assert free and all(h.state == HostState.AVAILABLE for h in free)
        cluster = session.get(ClusterRow, cluster_id)
        assert cluster is not None
        [claimed] = allocation.allocate_hosts(session, cluster, 1, engine.clock.now())
        claimed_id = claimed.id
        loaded = next(h for h in free if h.id == claimed_id)
        assert loaded.state == HostState.ALLOCATED and loaded.cluster_id == cluster_id
        raise _Undo
    assert engine.host_owners()[claimed.name] is None

"""Row leases on a real database (SQLite, or PostgreSQL with CLUSTERPLANE_TEST_DATABASE).

A pass finds and leases its due rows in one transaction; a row another worker holds is
not taken until that lease expires; a lease renews only while its token still holds it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from clusterplane.db import leases
from clusterplane.db.engine import transaction
from clusterplane.db.rows import ClusterRow
from tests.support.engine import Engine

BODY = {
    "cluster_name": "leased",
    "num_gpus": 8,
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
WALL = datetime(2026, 1, 1, tzinfo=UTC)


def _create(engine: Engine, name: str) -> str:
    response = engine.client.post(
        "/v1/compute/clusters", json={**BODY, "cluster_name": name}, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    return str(response.json()["cluster_id"])


def _claim(engine: Engine, owner: str, wall: datetime) -> list[tuple[str, str]]:
    with transaction(engine.app.sessions) as session:
        return leases.claim_due(
            session,
            ClusterRow,
            fleet_now=engine.clock.now(),
            wall=wall,
            limit=50,
            owner=owner,
            seconds=15,
        )


def test_a_pass_leases_every_due_row_and_a_second_worker_gets_none_of_them(
    engine: Engine,
) -> None:
    wanted = {_create(engine, "first"), _create(engine, "second")}
    claimed = _claim(engine, "worker-a", WALL)
    assert {row_id for row_id, _ in claimed} == wanted
    assert _claim(engine, "worker-b", WALL + timedelta(seconds=14)) == []
    with transaction(engine.app.sessions) as session:
        owners = set(session.scalars(select(ClusterRow.lease_owner)))
    assert owners == {"worker-a"}


def test_an_expired_lease_is_taken_over_and_the_old_token_can_no_longer_renew_or_write(
    engine: Engine,
) -> None:
    cluster_id = _create(engine, "taken-over")
    [(_, old_token)] = _claim(engine, "crashed", WALL)
    [(row_id, new_token)] = _claim(engine, "survivor", WALL + timedelta(seconds=16))
    assert row_id == cluster_id and new_token != old_token
    with transaction(engine.app.sessions) as session:
        assert not leases.renew(session, ClusterRow, cluster_id, old_token, seconds=15, wall=WALL)
        assert leases.load_guarded(session, ClusterRow, cluster_id, old_token) is None
        assert leases.renew(session, ClusterRow, cluster_id, new_token, seconds=15, wall=WALL)
        assert leases.load_guarded(session, ClusterRow, cluster_id, new_token) is not None


def test_rows_not_yet_due_or_deleted_are_never_claimed(engine: Engine) -> None:
    later = _create(engine, "later")
    gone = _create(engine, "gone")
    now = engine.clock.now()
    with transaction(engine.app.sessions) as session:
        session.execute(
            update(ClusterRow)
            .where(ClusterRow.id == later)
            .values(next_reconcile_at=now + timedelta(minutes=5))
        )
        session.execute(update(ClusterRow).where(ClusterRow.id == gone).values(deleted_at=now))
    assert _claim(engine, "worker", WALL) == []
    engine.clock.advance(301)
    assert [row_id for row_id, _ in _claim(engine, "worker", WALL)] == [later]

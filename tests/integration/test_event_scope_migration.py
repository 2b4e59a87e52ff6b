"""Migration 0012 gives events recorded before it the scope the engine now records: the
project that sees each one and the cluster and node it concerns, from the objects the
events are about; old events are not queued for webhooks."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import select, update

from clusterplane.db.engine import MIGRATIONS_DIR, make_engine, transaction
from clusterplane.db.rows import EventRow
from tests.support.engine import make_engine as make_test_engine

CLUSTER = {
    "cluster_name": "train",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 32,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
}
Scopes = dict[int, tuple[str, str | None, str | None, str | None]]


def _scopes(sessions) -> Scopes:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        return {
            e.id: (e.object_type, e.project_id, e.cluster_id, e.node_row_id)
            for e in session.scalars(select(EventRow))
        }


def _migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = make_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def test_events_from_before_the_migration_get_their_scope_from_their_objects(tmp_path: Path):
    for engine in make_test_engine(tmp_path):
        response = engine.client.post(
            "/v1/compute/clusters", json=CLUSTER, headers=engine.headers()
        )
        assert response.status_code == 200, response.text
        engine.advance(3 * 3600, step=60)
        cluster = engine.client.get(
            f"/v1/compute/clusters/{response.json()['cluster_id']}", headers=engine.headers()
        ).json()
        idle = next(name for name, owner in engine.host_owners().items() if owner is None)
        for host in (cluster["gpu_worker_nodes"][0]["host_name"], idle):
            signal = {"host_name": host, "kind": "fallen_off_bus"}
            assert engine.client.post(
                "/admin/v1/health/events", json=signal, headers=engine.headers()
            ).is_success
        volume = {"volume_name": "data", "size_tib": 1, "region": "test-1"}
        assert engine.client.post(
            "/v1/compute/clusters/storage/volumes", json=volume, headers=engine.headers()
        ).is_success
        recorded = _scopes(engine.app.sessions)
        with transaction(engine.app.sessions) as session:
            session.execute(update(EventRow).values(fanout_pending=True))
        _migrate(engine.database_url, "0011", down=True)
        _migrate(engine.database_url, "head")
        migrated = _scopes(engine.app.sessions)
        with transaction(engine.app.sessions) as session:
            pending = session.scalars(select(EventRow.id).where(EventRow.fanout_pending)).all()
    assert {kind for kind, *_ in recorded.values()} >= {
        "cluster",
        "node",
        "volume",
        "health_event",
        "remediation",
        "host",
    }
    for event_id, (kind, project, cluster_id, node) in recorded.items():
        if kind == "cluster":  # a cluster's event names no node after the migration
            assert migrated[event_id][:3] == (kind, project, cluster_id)
        else:
            assert migrated[event_id] == (kind, project, cluster_id, node), kind
    assert any(node for *_, node in migrated.values())
    assert pending == [], "events from before the migration are not sent to webhooks"

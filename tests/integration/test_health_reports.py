"""Health reports written together (a failure storm): each decided as if it came alone,
after the ones before it; each answered with its own event or its own error; one that
fails while written fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from clusterplane.db.engine import transaction
from clusterplane.db.rows import HealthEventRow, RemediationRow
from clusterplane.domain.health import EventKind
from clusterplane.errors import InvalidRequest, NotFound
from clusterplane.services.health import health
from clusterplane.services.health.health_reports import Report
from tests.integration.test_health_remediation import cluster_health, ingest, ready_cluster
from tests.support.engine import Engine, make_engine

PATH = "/admin/v1/health/events"


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Engine]:
    """A second engine like `engine`, on its own database."""
    yield from make_engine(tmp_path / "twin")


def storm_reports(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """XID 79 on every worker of a five-worker cluster (past the stop rule), a repeat on
    the first, a harmless XID 13, and two reports the API refuses."""
    names = [w["host_name"] for w in workers]
    return [
        *({"host_name": n, "kind": "xid", "xid_code": 79} for n in names),
        {"host_name": names[0], "kind": "xid", "xid_code": 79},
        {"host_name": names[1], "kind": "xid", "xid_code": 13},
        {"host_name": "no-such-host", "kind": "xid", "xid_code": 79},
        {"host_name": names[2], "kind": "xid"},
    ]


def as_report(body: dict[str, Any]) -> Report:
    signal = health.Signal(kind=EventKind(body["kind"]), code=body.get("xid_code"))
    return Report(host_name=body["host_name"], instance_id=None, signal=signal)


def decision(outcome: dict[str, Any] | Exception, proposals: dict[str, int]) -> Any:
    """What a report's answer decided, without ids: comparable across two databases."""
    if isinstance(outcome, Exception):
        return type(outcome).__name__, str(outcome)
    rid = outcome["remediation_id"]
    return (
        outcome["host_name"],
        outcome["action"],
        outcome["held_reason"],
        proposals.setdefault(rid, len(proposals)) if rid else None,
    )


def test_a_batch_of_reports_decides_exactly_as_the_same_reports_one_after_another(
    engine: Engine, twin: Engine
):
    batched_cluster = ready_cluster(engine, num_gpus=40)
    alone_cluster = ready_cluster(twin, num_gpus=40)
    batched_bodies = storm_reports(batched_cluster["gpu_worker_nodes"])
    alone_bodies = storm_reports(alone_cluster["gpu_worker_nodes"])

    group = engine.app.api.state.cp.health_reports
    batched = group.write_batch([as_report(b) for b in batched_bodies])
    alone: list[dict[str, Any] | Exception] = []
    for body in alone_bodies:
        response = twin.client.post(PATH, json=body, headers=twin.headers())
        if response.status_code == 200:
            alone.append(response.json())
        else:
            error = response.json()["error"]
            kind = NotFound if response.status_code == 404 else InvalidRequest
            alone.append(kind(error["message"]))

    # Host names differ between the two fleets' placements only by which host serves.
    renamed = {
        a["host_name"]: b["host_name"]
        for a, b in zip(
            alone_cluster["gpu_worker_nodes"], batched_cluster["gpu_worker_nodes"], strict=True
        )
    }
    for outcome in alone:
        if isinstance(outcome, dict):
            outcome["host_name"] = renamed[outcome["host_name"]]
    batched_proposals: dict[str, int] = {}
    alone_proposals: dict[str, int] = {}
    assert [decision(o, batched_proposals) for o in batched] == [
        decision(o, alone_proposals) for o in alone
    ]
    assert len(batched_proposals) == 2  # then the stop rule held the rest
    batched_health = cluster_health(engine, batched_cluster["cluster_id"])
    alone_health = cluster_health(twin, alone_cluster["cluster_id"])
    for key in ("status", "unhealthy_workers", "remediation_stopped_reason"):
        assert batched_health[key] == alone_health[key]
    assert [n["cordoned_by"] for n in batched_health["nodes"]] == [
        n["cordoned_by"] for n in alone_health["nodes"]
    ]


def test_concurrent_reports_are_each_answered_with_their_own_event_and_stored_once(
    engine: Engine,
):
    cluster = ready_cluster(engine, num_gpus=40)
    bodies = storm_reports(cluster["gpu_worker_nodes"])

    async def storm() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=engine.app.api)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=engine.headers()
        ) as http:
            return await asyncio.gather(*(http.post(PATH, json=b) for b in bodies))

    responses = asyncio.run(storm())

    assert [r.status_code for r in responses] == [200] * 7 + [404, 400]
    answered = [r.json() for r in responses[:7]]
    assert [a["host_name"] for a in answered] == [b["host_name"] for b in bodies[:7]]
    assert [a["xid_code"] for a in answered] == [b["xid_code"] for b in bodies[:7]]
    assert len({a["id"] for a in answered}) == 7
    with transaction(engine.app.sessions) as session:
        assert session.scalar(select(func.count()).select_from(HealthEventRow)) == 7
        per_node = session.execute(
            select(RemediationRow.node_row_id, func.count()).group_by(RemediationRow.node_row_id)
        ).all()
    assert per_node and all(count == 1 for _, count in per_node)
    first, repeat = answered[0], answered[5]
    assert first["remediation_id"] and repeat["remediation_id"] == first["remediation_id"]


def test_a_report_that_fails_while_written_fails_alone_and_its_batch_mates_are_stored(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    cluster = ready_cluster(engine, num_gpus=40)
    names = [w["host_name"] for w in cluster["gpu_worker_nodes"]]
    bodies = [{"host_name": n, "kind": "xid", "xid_code": 79} for n in names[:3]]
    ingest_event = health.ingest_event

    def failing_for_the_second_host(*args: Any, **kwargs: Any) -> HealthEventRow:
        event = ingest_event(*args, **kwargs)
        if event.host_name == names[1]:
            raise RuntimeError("the database refused this one")
        return event

    monkeypatch.setattr(health, "ingest_event", failing_for_the_second_host)
    outcomes = engine.app.api.state.cp.health_reports.write_batch([as_report(b) for b in bodies])
    monkeypatch.undo()

    assert isinstance(outcomes[1], RuntimeError)
    assert [o["host_name"] for o in (outcomes[0], outcomes[2]) if isinstance(o, dict)] == [
        names[0],
        names[2],
    ]
    stored = {e["host_name"]: e for e in _events(engine)}
    assert sorted(stored) == sorted([names[0], names[2]])
    assert all(e["remediation_id"] for e in stored.values())
    again = ingest(engine, host_name=names[1], kind="xid", xid_code=79)
    assert again["host_name"] == names[1] and len(_events(engine)) == 3


def _events(engine: Engine) -> list[dict[str, Any]]:
    response = engine.client.get(PATH, headers=engine.headers())
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found

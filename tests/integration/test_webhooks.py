"""Webhooks against local receivers: signatures, retries with backoff, replays, fairness,
bounds and who may register what.

Receivers are HTTP servers on 127.0.0.1 (`tests/support/receivers.py`), allowed plain http
by `webhooks.http_networks`. Most tests drive the dispatcher a pass at a time
(`run_once`) on a manual wall clock, so retry times are exact; the fairness test runs it
in its thread on real time.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from clusterplane.clock import ManualClock, SystemClock
from clusterplane.db.engine import transaction
from clusterplane.db.rows import WebhookDeliveryRow
from clusterplane.domain.webhooks import AddressPolicy
from clusterplane.settings import WebhookSettings
from tests.support.engine import Engine, make_engine
from tests.support.receivers import Receiver, TestCA, docs_verifier
from tests.support.tenants import new_tenant

WEBHOOKS = "/v1/clusterplane/webhooks"
VOLUMES = "/v1/compute/clusters/storage/volumes"
LOCAL = WebhookSettings(
    http_networks=("127.0.0.0/8",),
    retry_base_seconds=10.0,
    retry_max_seconds=3600.0,
    max_attempts=4,
    timeout_seconds=5.0,
)
verify = docs_verifier()


@pytest.fixture
def wall() -> ManualClock:
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def engine(tmp_path: Path, wall: ManualClock) -> Iterator[Engine]:
    yield from make_engine(tmp_path, wall_clock=wall, webhooks=LOCAL)


def register(engine: Engine, url: str, kinds: list[str], key: str | None = None, **extra: Any):
    body = {"url": url, "kinds": kinds, **extra}
    response = engine.client.post(WEBHOOKS, json=body, headers=engine.headers(key))
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(engine: Engine, webhook_id: str, key: str | None = None) -> list[dict[str, Any]]:
    response = engine.client.get(f"{WEBHOOKS}/{webhook_id}/deliveries", headers=engine.headers(key))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def volume(engine: Engine, key: str | None = None, name: str = "data") -> str:
    body = {"volume_name": name, "size_tib": 1, "region": "test-1"}
    response = engine.client.post(VOLUMES, json=body, headers=engine.headers(key))
    assert response.status_code == 200, response.text
    return str(response.json()["volume_id"])


def dispatch(engine: Engine) -> int:
    dispatcher = engine.app.manager.webhooks
    assert dispatcher is not None
    return dispatcher.run_once()


def when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_project_gets_its_own_events_signed_as_documented_and_no_one_elses(
    engine: Engine, wall: ManualClock
):
    alpha, alpha_key = new_tenant(engine, "alpha")
    beta, beta_key = new_tenant(engine, "beta")
    with Receiver() as to_alpha, Receiver() as to_beta:
        hook_a = register(engine, to_alpha.url(), ["volume.*"], alpha_key)
        hook_b = register(engine, to_beta.url(), ["volume.created"], beta_key)
        assert hook_a["secret"].startswith("whsec_") and hook_a["project_id"] == alpha
        volume(engine, alpha_key)
        volume(engine, beta_key)
        engine.advance(3600, step=60)  # the volume controller makes them available
        assert dispatch(engine) == 3
        got_a, got_b = to_alpha.wait_for(2), to_beta.wait_for(1)
    assert len(got_a) == 2 and len(got_b) == 1
    now = wall.now().timestamp()
    for got, secret in ((got_a, hook_a["secret"]), (got_b, hook_b["secret"])):
        for request in got:
            header = request.headers["Clusterplane-Signature"]
            assert verify(secret, header, request.body, now=now)
            assert not verify(secret, header, request.body + b" ", now=now)
            assert not verify(hook_a["secret"] + "x", header, request.body, now=now)
            assert not verify(secret, header, request.body, now=now + 3600)
    bodies = [orjson.loads(r.body) for r in got_a]
    assert sorted(b["kind"] for b in bodies) == ["volume.created", "volume.status"]
    assert {b["project_id"] for b in bodies} == {alpha}
    assert orjson.loads(got_b[0].body)["project_id"] == beta
    logged = engine.client.get(
        "/v1/clusterplane/events", params={"kind": "volume.*"}, headers=engine.headers(alpha_key)
    ).json()["events"]
    assert sorted(bodies, key=lambda b: b["id"]) == sorted(logged, key=lambda e: e["id"])
    sent = deliveries(engine, hook_a["id"], alpha_key)
    assert {d["id"] for d in sent} == {r.headers["Clusterplane-Delivery"] for r in got_a}
    assert all(d["state"] == "succeeded" for d in sent)
    assert all(d["attempts"][0]["status_code"] == 200 for d in sent)
    assert {r.headers["Clusterplane-Event-Kind"] for r in got_a} == {b["kind"] for b in bodies}


def test_a_failing_receiver_is_retried_with_growing_delays_and_every_attempt_recorded(
    engine: Engine, wall: ManualClock
):
    with Receiver("fail") as receiver:
        hook = register(engine, receiver.url(), ["volume.created"])
        volume(engine)
        gaps: list[float] = []
        for attempt in range(1, LOCAL.max_attempts + 1):
            assert dispatch(engine) == 1
            [delivery] = deliveries(engine, hook["id"])
            assert len(delivery["attempts"]) == attempt == delivery["failures"]
            last = delivery["attempts"][-1]
            assert last["status_code"] == 500 and "500" in last["error"]
            assert last["duration_ms"] >= 0
            if attempt == LOCAL.max_attempts:
                break
            gaps.append(when(delivery["next_attempt_at"]) - when(last["at"]))
            assert dispatch(engine) == 0, "not due before its delay"
            wall.set(datetime.fromisoformat(delivery["next_attempt_at"].replace("Z", "+00:00")))
        assert len(receiver.wait_for(LOCAL.max_attempts)) == LOCAL.max_attempts
    for n, gap in enumerate(gaps, start=1):
        full = LOCAL.retry_base_seconds * 2 ** (n - 1)
        assert 0.75 * full - 0.001 <= gap <= full + 0.001
    assert all(later >= 1.5 * earlier for earlier, later in itertools.pairwise(gaps))
    assert delivery["state"] == "failed" and delivery["next_attempt_at"] is None
    assert delivery["finished_at"] is not None
    ids = {r.headers["Clusterplane-Delivery"] for r in receiver.received}
    assert ids == {delivery["id"]}, "every retry is the same delivery"


def test_a_replay_sends_a_failed_delivery_again_once_however_often_it_is_asked(
    engine: Engine, wall: ManualClock
):
    with Receiver("fail") as receiver:
        hook = register(engine, receiver.url(), ["volume.created"])
        volume(engine)
        for _ in range(LOCAL.max_attempts):
            dispatch(engine)
            wall.advance(LOCAL.retry_max_seconds)
        [failed] = deliveries(engine, hook["id"])
        assert failed["state"] == "failed"
        receiver.mode = "ok"
        replay = f"{WEBHOOKS}/{hook['id']}/deliveries/{failed['id']}/replay"
        first = engine.client.post(replay, headers=engine.headers())
        again = engine.client.post(replay, headers=engine.headers())
        assert first.status_code == again.status_code == 200
        assert again.json()["state"] == "pending" and again.json()["replays"] == 1
        assert dispatch(engine) == 1
        receiver.wait_for(LOCAL.max_attempts + 1)
        assert dispatch(engine) == 0
    [done] = deliveries(engine, hook["id"])
    assert done["state"] == "succeeded" and done["replays"] == 1
    assert [a["status_code"] for a in done["attempts"]] == [500] * LOCAL.max_attempts + [200]
    assert len(receiver.received) == LOCAL.max_attempts + 1


def test_a_hanging_receiver_of_one_project_does_not_delay_another_projects_deliveries(
    tmp_path: Path,
):
    settings = WebhookSettings(
        http_networks=("127.0.0.0/8",), timeout_seconds=5.0, poll_interval_seconds=0.05
    )
    for engine in make_engine(tmp_path, wall_clock=SystemClock(), webhooks=settings):
        _, alpha_key = new_tenant(engine, "alpha")
        _, beta_key = new_tenant(engine, "beta")
        dispatcher = engine.app.manager.webhooks
        assert dispatcher is not None
        with Receiver("hang") as hanging, Receiver() as healthy:
            register(engine, hanging.url(), ["volume.*"], alpha_key)
            register(engine, healthy.url(), ["volume.*"], beta_key)
            for n in range(6):
                volume(engine, alpha_key, name=f"a{n}")
            volume(engine, beta_key)
            dispatcher.start()
            try:
                started = time.monotonic()
                [arrived] = healthy.wait_for(1, timeout=settings.timeout_seconds)
                assert arrived.at - started < settings.timeout_seconds / 2
                hanging.wait_for(settings.max_concurrent_per_endpoint)
                time.sleep(0.5)
                held = len(hanging.received)
            finally:
                dispatcher.stop()
        assert held == settings.max_concurrent_per_endpoint, "the bound per endpoint held"


def test_the_operators_fleet_endpoint_gets_host_events_that_no_project_sees(engine: Engine):
    _, alpha_key = new_tenant(engine, "alpha")
    with Receiver() as fleet, Receiver() as tenant:
        fleet_hook = register(engine, fleet.url(), ["host.*"], fleet=True)
        register(engine, tenant.url(), ["*"], alpha_key)
        assert fleet_hook["fleet"] is True and fleet_hook["project_id"] is None
        host = next(name for name, owner in engine.host_owners().items() if owner is None)
        signal = {"host_name": host, "kind": "fallen_off_bus"}
        response = engine.client.post(
            "/admin/v1/health/events", json=signal, headers=engine.headers()
        )
        assert response.status_code == 200, response.text
        dispatch(engine)
        [got] = fleet.wait_for(1)
    assert orjson.loads(got.body)["kind"] == "host.quarantined"
    assert tenant.received == []
    refused = engine.client.post(
        WEBHOOKS,
        json={"url": tenant.url(), "kinds": ["*"], "fleet": True},
        headers=engine.headers(alpha_key),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_denied"


def test_endpoints_and_waiting_deliveries_are_bounded_per_project(
    tmp_path: Path, wall: ManualClock
):
    settings = WebhookSettings(
        http_networks=("127.0.0.0/8",),
        max_endpoints_per_project=2,
        max_pending_per_project=2,
        max_attempts=2,
        retry_base_seconds=1000.0,
    )
    for engine in make_engine(tmp_path, wall_clock=wall, webhooks=settings):
        _, key = new_tenant(engine, "alpha")
        with Receiver("fail") as receiver:
            hook = register(engine, receiver.url(), ["volume.created"], key)
            spare = register(engine, receiver.url(), ["cluster.deleted"], key)
            third = engine.client.post(
                WEBHOOKS, json={"url": receiver.url(), "kinds": ["*"]}, headers=engine.headers(key)
            )
            assert third.status_code == 403 and third.json()["error"]["type"] == "quota_exceeded"
            engine.client.delete(f"{WEBHOOKS}/{spare['id']}", headers=engine.headers(key))
            register(engine, receiver.url(), ["cluster.deleted"], key)

            for n in range(3):
                volume(engine, key, name=f"v{n}")
            dispatch(engine)
            assert len(deliveries(engine, hook["id"], key)) == 2, "the outbox holds two"
            shown = engine.client.get(f"{WEBHOOKS}/{hook['id']}", headers=engine.headers(key))
            assert shown.json()["dropped_events"] == 1
            wall.advance(2000)
            dispatch(engine)  # both fail again: finished, the outbox is empty
            finished = deliveries(engine, hook["id"], key)
            assert {d["state"] for d in finished} == {"failed"}
            for n in range(3, 5):
                volume(engine, key, name=f"v{n}")
            dispatch(engine)
            full = engine.client.post(
                f"{WEBHOOKS}/{hook['id']}/deliveries/{finished[0]['id']}/replay",
                headers=engine.headers(key),
            )
        assert full.status_code == 409, full.text
        assert full.json()["error"]["type"] == "conflict"


def test_a_project_cannot_see_or_touch_another_projects_endpoints(engine: Engine):
    alpha, alpha_key = new_tenant(engine, "alpha")
    _, beta_key = new_tenant(engine, "beta")
    with Receiver() as receiver:
        hook = register(engine, receiver.url(), ["volume.*"], alpha_key)
    one = f"{WEBHOOKS}/{hook['id']}"
    for method, path in (
        ("GET", one),
        ("PATCH", one),
        ("DELETE", one),
        ("GET", one + "/deliveries"),
    ):
        response = engine.client.request(method, path, json={}, headers=engine.headers(beta_key))
        assert response.status_code == 404, (method, path, response.text)
    assert engine.client.get(WEBHOOKS, headers=engine.headers(beta_key)).json()["webhooks"] == []
    everything = engine.client.get(WEBHOOKS, headers=engine.headers()).json()["webhooks"]
    assert [w["id"] for w in everything] == [hook["id"]], "admin keys see every endpoint"
    listed = engine.client.get(WEBHOOKS, headers=engine.headers(alpha_key)).json()["webhooks"]
    assert listed[0]["project_id"] == alpha and "secret" not in listed[0]


def test_deleting_an_endpoint_cancels_what_it_still_had_to_send(engine: Engine):
    with Receiver("fail") as receiver:
        hook = register(engine, receiver.url(), ["volume.created"])
        volume(engine)
        dispatch(engine)
        [waiting] = deliveries(engine, hook["id"])
        assert waiting["state"] == "pending"
        gone = engine.client.delete(f"{WEBHOOKS}/{hook['id']}", headers=engine.headers())
        assert gone.status_code == 200 and gone.json()["id"] == hook["id"]
        assert (
            engine.client.get(f"{WEBHOOKS}/{hook['id']}", headers=engine.headers()).status_code
            == 404
        )
    with transaction(engine.app.sessions) as session:
        states = set(session.scalars(select(WebhookDeliveryRow.state)))
    assert states == {"cancelled"}


def test_an_endpoint_can_be_paused_and_changed(engine: Engine):
    with Receiver() as receiver:
        hook = register(engine, receiver.url(), ["volume.created"])
        path = f"{WEBHOOKS}/{hook['id']}"
        paused = engine.client.patch(path, json={"enabled": False}, headers=engine.headers())
        assert paused.status_code == 200 and paused.json()["enabled"] is False
        volume(engine, name="quiet")
        dispatch(engine)
        assert receiver.received == [] and deliveries(engine, hook["id"]) == []
        changed = engine.client.patch(
            path, json={"enabled": True, "kinds": ["volume.*"]}, headers=engine.headers()
        )
        assert changed.json()["kinds"] == ["volume.*"]
        volume(engine, name="loud")
        dispatch(engine)
        [got] = receiver.wait_for(1)
    assert orjson.loads(got.body)["kind"] == "volume.created"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "https://169.254.169.254/latest/meta-data", "kinds": ["*"]}, "url"),
        ({"url": "https://10.0.0.8/hook", "kinds": ["*"]}, "url"),
        ({"url": "http://8.8.8.8/hook", "kinds": ["*"]}, "url"),
        ({"url": "ftp://example.com/hook", "kinds": ["*"]}, "url"),
        ({"url": "https://me:pw@example.com/hook", "kinds": ["*"]}, "url"),
        ({"url": "https://example.com/hook", "kinds": ["cluster.exploded"]}, "kinds"),
        ({"url": "https://example.com/hook", "kinds": []}, "kinds"),
        ({"url": "https://example.com/hook"}, "kinds"),
        ({"url": "https://example.com/hook", "kinds": ["*"], "secret": "mine"}, "secret"),
        ({"url": "https://example.com/hook", "kinds": ["*"], "project_id": "proj_x"}, "project_id"),
    ],
)
def test_bad_registrations_are_a_400_or_404_and_change_nothing(
    engine: Engine, body: dict[str, Any], param: str
):
    before = engine.table_counts()
    response = engine.client.post(WEBHOOKS, json=body, headers=engine.headers())
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == param
    assert engine.table_counts() == before


def test_bad_delivery_queries_are_a_400(engine: Engine):
    with Receiver() as receiver:
        hook = register(engine, receiver.url(), ["*"])
    path = f"{WEBHOOKS}/{hook['id']}/deliveries"
    for params, param in (({"state": "lost"}, "state"), ({"cursor": "zzz"}, "cursor")):
        response = engine.client.get(path, params=params, headers=engine.headers())
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


def test_a_receiver_no_longer_allowed_is_refused_at_the_attempt_without_a_connection(
    engine: Engine,
):
    with Receiver() as receiver:
        hook = register(engine, receiver.url(), ["volume.created"])
        dispatcher = engine.app.manager.webhooks
        assert dispatcher is not None
        dispatcher.sender.policy = AddressPolicy()  # the operator no longer allows loopback
        volume(engine)
        dispatch(engine)
        [delivery] = deliveries(engine, hook["id"])
        time.sleep(0.2)
    assert receiver.received == []
    error = delivery["attempts"][0]["error"]
    assert error.startswith("refused:") and "127.0.0.1" in error


def test_https_receivers_are_verified_against_the_operators_ca_by_name(
    tmp_path: Path, wall: ManualClock
):
    ca = TestCA(tmp_path)
    (tmp_path / "stranger").mkdir()
    stranger = TestCA(tmp_path / "stranger")
    settings = WebhookSettings(allowed_networks=("127.0.0.0/8",), ca_file=ca.ca_file)
    for engine in make_engine(tmp_path, wall_clock=wall, webhooks=settings):
        with (
            Receiver(tls=ca.server_context("localhost")) as trusted,
            Receiver(tls=stranger.server_context("localhost")) as untrusted,
        ):
            good = register(engine, trusted.url(host="localhost"), ["volume.created"])
            bad = register(engine, untrusted.url(host="localhost"), ["volume.created"])
            volume(engine)
            dispatch(engine)
            [got] = trusted.wait_for(1)
            assert got.headers["Host"] == f"localhost:{trusted.port}"
            assert verify(
                good["secret"],
                got.headers["Clusterplane-Signature"],
                got.body,
                now=wall.now().timestamp(),
            )
            [refused] = deliveries(engine, bad["id"])
        assert untrusted.received == []
        assert refused["state"] == "pending" and refused["attempts"][0]["status_code"] is None
        assert "certificate" in refused["attempts"][0]["error"].lower()

"""POST of a cluster is served by a plain route (`clusters.create_route`), ahead of the
documented one: it keeps every bound a request of one tenant must not lift."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from clusterplane.api.inflight import InFlight
from clusterplane.api.routers import clusters as clusters_router
from tests.support.clusters import cluster_body
from tests.support.engine import Engine
from tests.support.tenants import new_tenant

CLUSTERS = "/v1/compute/clusters"


def test_the_create_route_bounds_each_keys_requests_in_flight_and_serves_other_tenants(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    """A tenant whose create holds its key's only slot gets 429 for the next create;
    another tenant's create is served meanwhile, and the slot comes back."""
    engine.app.api.state.cp.inflight = InFlight(1)
    _, holder_key = new_tenant(engine, "holder")
    _, other_key = new_tenant(engine, "other")
    entered, release = threading.Event(), threading.Event()
    real = clusters_router._create

    def slow(*args: Any) -> Any:
        if not entered.is_set():
            entered.set()
            release.wait(10)
        return real(*args)

    monkeypatch.setattr(clusters_router, "_create", slow)

    def create(name: str, key: str) -> Any:
        return engine.client.post(
            CLUSTERS, json=cluster_body(cluster_name=name), headers=engine.headers(key)
        )

    answers: list[int] = []
    first = threading.Thread(target=lambda: answers.append(create("held", holder_key).status_code))
    first.start()
    try:
        assert entered.wait(10)
        refused = create("second", holder_key)
        assert refused.status_code == 429
        assert refused.json()["error"]["message"]
        served = create("other", other_key)
        assert served.status_code == 200, served.text
    finally:
        release.set()
        first.join(10)
    assert answers == [200]
    again = create("again", holder_key)  # the slot was given back
    assert again.status_code == 200, again.text
    listed = engine.client.get(CLUSTERS, headers=engine.headers(holder_key)).json()["clusters"]
    assert sorted(c["cluster_name"] for c in listed) == ["again", "held"]

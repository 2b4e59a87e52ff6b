"""Replayed POSTs against a real server: a retried create never makes a twin (README).

The official SDK retries a POST whose connection dropped, with no idempotency key, marking
the retry with `x-stainless-retry-count: 1`. A transport that delivers the first create to
the server, reads the committed answer and then drops the connection reproduces exactly
that. The `Idempotency-Key` header gives callers an explicit way to the same guarantee.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import together

from tests.support.server import SMALL_FLEET, ServerProcess

CLUSTERS = "/v1/compute/clusters"
VOLUMES = "/v1/compute/clusters/storage/volumes"
DRIVER = "cu128-drv570-ubuntu2204"


class DropAfterCommit(httpx.BaseTransport):
    """Forwards every request and records the POSTs to `path`; with `drop`, the first of
    them is answered by the server, its response read in full, and then the connection
    "drops" (`httpx.ReadError`)."""

    def __init__(self, path: str, *, drop: bool = True):
        self.path = path
        self.drop = drop
        self.inner = httpx.HTTPTransport()
        self.dropped: httpx.Response | None = None
        self.posts: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == self.path:
            self.posts.append(request)
            if self.drop and self.dropped is None:
                response.read()
                response.close()
                self.dropped = response
                raise httpx.ReadError("connection reset after the server answered", request=request)
        return response

    def close(self) -> None:
        self.inner.close()

    def dropped_json(self) -> dict[str, Any]:
        assert self.dropped is not None
        assert self.dropped.status_code == 200, self.dropped.text
        body: dict[str, Any] = self.dropped.json()
        return body


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module; tests tell their objects apart by unique names.

    Fleet time runs x3000, so the SDK's ~1 s retry backoff is ~50 fleet minutes: the
    replay window must be wall time for the dropped-connection tests to pass."""
    workdir = tmp_path_factory.mktemp("replay")
    with ServerProcess(workdir, time_scale=3000, fleet=SMALL_FLEET) as proc:
        yield proc


@pytest.fixture
def http(live: ServerProcess) -> Iterator[httpx.Client]:
    with live.client() as client:
        yield client


def sdk(live: ServerProcess, transport: httpx.BaseTransport | None = None) -> together.Together:
    http_client = httpx.Client(transport=transport) if transport is not None else None
    return together.Together(
        api_key=live.api_key, base_url=live.base_url, http_client=http_client, max_retries=2
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cluster_body(name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "cluster_name": name,
        "billing_type": "ON_DEMAND",
        "gpu_type": "H100_SXM",
        "num_gpus": 8,
        "region": "test-1",
        "nvidia_version_id": DRIVER,
        **overrides,
    }


def clusters_named(http: httpx.Client, name: str) -> list[str]:
    response = http.get(CLUSTERS)
    assert response.status_code == 200, response.text
    return [c["cluster_id"] for c in response.json()["clusters"] if c["cluster_name"] == name]


def volumes_named(http: httpx.Client, name: str) -> list[str]:
    response = http.get(VOLUMES)
    assert response.status_code == 200, response.text
    return [v["volume_id"] for v in response.json()["volumes"] if v["volume_name"] == name]


def test_a_cluster_create_retried_after_a_dropped_connection_makes_one_cluster(
    live: ServerProcess, http: httpx.Client
) -> None:
    transport = DropAfterCommit(CLUSTERS)
    name = unique("replayed")
    with sdk(live, transport) as client:
        cluster = client.clusters.create(**cluster_body(name))

    assert [p.headers["x-stainless-retry-count"] for p in transport.posts] == ["0", "1"]
    assert transport.posts[0].content == transport.posts[1].content
    committed = transport.dropped_json()["cluster_id"]
    assert cluster.cluster_id == committed
    assert clusters_named(http, name) == [committed]


def test_a_volume_create_retried_after_a_dropped_connection_makes_one_volume(
    live: ServerProcess, http: httpx.Client
) -> None:
    transport = DropAfterCommit(VOLUMES)
    name = unique("replayed-vol")
    with sdk(live, transport) as client:
        volume = client.clusters.storage.create(region="test-1", size_tib=1, volume_name=name)

    assert [p.headers["x-stainless-retry-count"] for p in transport.posts] == ["0", "1"]
    committed = transport.dropped_json()["volume_id"]
    assert volume.volume_id == committed
    assert volumes_named(http, name) == [committed]


def test_the_same_idempotency_key_and_body_return_the_first_cluster(
    live: ServerProcess, http: httpx.Client
) -> None:
    name = unique("keyed")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    with sdk(live) as client:
        first = client.clusters.create(**cluster_body(name), extra_headers=key)
        second = client.clusters.create(**cluster_body(name), extra_headers=key)
    third = http.post(CLUSTERS, json=cluster_body(name), headers=key)

    assert third.status_code == 200, third.text
    assert first.cluster_id == second.cluster_id == third.json()["cluster_id"]
    assert clusters_named(http, name) == [first.cluster_id]


def test_the_same_idempotency_key_and_body_return_the_first_volume(
    live: ServerProcess, http: httpx.Client
) -> None:
    name = unique("keyed-vol")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"region": "test-1", "size_tib": 1, "volume_name": name}
    first = http.post(VOLUMES, json=body, headers=key)
    second = http.post(VOLUMES, json=body, headers=key)

    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["volume_id"] == second.json()["volume_id"]
    assert volumes_named(http, name) == [first.json()["volume_id"]]


def test_the_same_idempotency_key_with_another_body_is_refused_with_409_not_to_be_retried(
    live: ServerProcess, http: httpx.Client
) -> None:
    name = unique("keyed-conflict")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = http.post(CLUSTERS, json=cluster_body(name), headers=key)
    assert first.status_code == 200, first.text

    refused = http.post(CLUSTERS, json=cluster_body(name, num_gpus=16), headers=key)

    assert refused.status_code == 409
    assert refused.headers["x-should-retry"] == "false"
    assert refused.headers["content-type"].startswith("application/json")
    error = refused.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    assert error["code"] is None or isinstance(error["code"], str)
    assert error["param"] == "Idempotency-Key"
    assert clusters_named(http, name) == [first.json()["cluster_id"]]


def test_the_sdk_does_not_retry_an_idempotency_key_conflict(
    live: ServerProcess, http: httpx.Client
) -> None:
    name = unique("keyed-sdk-conflict")
    key = {"Idempotency-Key": str(uuid.uuid4())}
    transport = DropAfterCommit(CLUSTERS, drop=False)
    with sdk(live, transport) as client:
        client.clusters.create(**cluster_body(name), extra_headers=key)
        with pytest.raises(together.ConflictError) as caught:
            client.clusters.create(**cluster_body(name, num_gpus=16), extra_headers=key)

    assert caught.value.status_code == 409
    assert [p.headers["x-stainless-retry-count"] for p in transport.posts] == ["0", "0"]
    assert len(clusters_named(http, name)) == 1


def test_two_identical_creates_without_key_or_retry_header_make_two_clusters(
    live: ServerProcess, http: httpx.Client
) -> None:
    name = unique("twins")
    first = http.post(CLUSTERS, json=cluster_body(name))
    second = http.post(CLUSTERS, json=cluster_body(name))

    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["cluster_id"] != second.json()["cluster_id"]
    assert sorted(clusters_named(http, name)) == sorted(
        [first.json()["cluster_id"], second.json()["cluster_id"]]
    )


def test_two_identical_volume_creates_without_key_or_retry_header_make_two_volumes(
    live: ServerProcess, http: httpx.Client
) -> None:
    name = unique("twin-vols")
    body = {"region": "test-1", "size_tib": 1, "volume_name": name}
    first = http.post(VOLUMES, json=body)
    second = http.post(VOLUMES, json=body)

    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json()["volume_id"] != second.json()["volume_id"]
    assert len(volumes_named(http, name)) == 2

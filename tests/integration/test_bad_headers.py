"""Every header (and numeric query value) the server parses: a malformed one is a clean
4xx in the spec's envelope, never a 500, and changes nothing.

Parsed headers: `Authorization` (401 when it is not a usable key), `Idempotency-Key`
(1-255 printable characters), `x-stainless-retry-count` (a small non-negative integer),
`Content-Length` (digits); the one numeric query value is `page_size`. Cases run against
the world of `test_bad_input` and use its checks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.test_bad_input import (
    CLUSTERS,
    REMS_A,
    VOLUMES,
    Case,
    World,
    assert_error,
    build_world,
    create_body,
    send,
)
from tests.support.engine import make_engine

RETRY = "x-stainless-retry-count"
VOLUME = {"volume_name": "hdr", "size_tib": 1, "region": "test-1"}

RETRY_COUNT_CASES = [
    Case(
        f"retry-count-{name}",
        "POST",
        path,
        400,
        body,
        headers={RETRY: value},
        param=RETRY,
        says=(RETRY,),
    )
    for name, value in (
        ("5000-digits", "9" * 5000),
        ("superscript-digit", b"\xb2"),
        ("negative", "-1"),
        ("fraction", "1.5"),
        ("word", "two"),
        ("empty", ""),
    )
    for path, body in ((CLUSTERS, create_body(cluster_name="hdr")), (VOLUMES, VOLUME))
]

IDEMPOTENCY_KEY_CASES = [
    Case(
        f"idempotency-key-{name}",
        "POST",
        CLUSTERS,
        400,
        create_body(cluster_name="hdr"),
        headers={"Idempotency-Key": value},
        param="Idempotency-Key",
    )
    for name, value in (
        ("control-character", "abc\x01def"),
        ("tab", "abc\tdef"),
        ("delete-character", "abc\x7fdef"),
        ("c1-control", b"abc\x85def"),
        ("empty", ""),
        ("256-characters", "k" * 256),
    )
]

AUTHORIZATION_CASES = [
    Case(f"authorization-{name}", "GET", CLUSTERS, 401, who=None, headers={"Authorization": value})
    for name, value in (
        ("5000-digits", "Bearer " + "9" * 5000),
        ("control-character", "Bearer cp_key_0123456789abcdef_abc\x01defghijklmnopqrstuvwxyz"),
        ("latin-1", b"Bearer \xe9" * 30),
        ("only-scheme", "Bearer"),
    )
]

QUERY_CASES = [
    Case(f"page-size-{name}", "GET", REMS_A + f"?page_size={value}", 400, param="page_size")
    for name, value in (
        ("5000-digits", "9" * 5000),
        ("superscript-digit", "%C2%B2"),
        ("arabic-indic-digit", "%D9%A3"),
    )
]

CONTENT_LENGTH_CASES = [
    Case(
        f"content-length-{name}",
        "POST",
        CLUSTERS,
        400,
        content=b"{}",
        headers={"Content-Length": value},
        param="Content-Length",
    )
    for name, value in (("5000-digits", "9" * 5000), ("superscript-digit", b"\xb2"))
]

CASES = (
    RETRY_COUNT_CASES
    + IDEMPOTENCY_KEY_CASES
    + AUTHORIZATION_CASES
    + QUERY_CASES
    + CONTENT_LENGTH_CASES
)


@pytest.fixture(scope="module")
def header_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    engines = make_engine(tmp_path_factory.mktemp("bad_headers"))
    yield build_world(next(engines))
    engines.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_malformed_header_is_refused_cleanly(header_world: World, case: Case) -> None:
    world = header_world
    before = world.engine.dump()
    response = send(world, case)
    error = assert_error(response, case.status, secrets=world.secrets)
    if case.param is not None:
        assert error["param"] == case.param, error
    for fragment in case.says:
        assert fragment in error["message"], error
    assert world.engine.dump() == before


@pytest.mark.parametrize("value", ["0", "1", "2", " 1 "])
def test_the_retry_counts_the_sdk_sends_are_accepted(header_world: World, value: str) -> None:
    world = header_world
    response = world.engine.client.post(
        VOLUMES,
        headers={**world.headers("a"), RETRY: value},
        json={**VOLUME, "volume_name": f"retry-{value.strip()}"},
    )
    assert response.status_code == 200, response.text


def test_a_printable_idempotency_key_still_replays(header_world: World) -> None:
    world = header_world
    headers = {**world.headers("a"), "Idempotency-Key": "order 42/é-ü".encode()}
    body = {**VOLUME, "volume_name": "keyed"}
    first = world.engine.client.post(VOLUMES, headers=headers, json=body)
    again = world.engine.client.post(VOLUMES, headers=headers, json=body)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["volume_id"] == again.json()["volume_id"]

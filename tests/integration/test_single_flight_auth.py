"""A storm of requests with one key the caller cache does not hold is authenticated once,
and a bad key is still refused for every request that presents it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from clusterplane.api import deps
from tests.support.engine import Engine


def storm(engine: Engine, key: str, count: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=engine.app.api)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=engine.headers(key)
        ) as http:
            return await asyncio.gather(*(http.get("/v1/whoami") for _ in range(count)))

    return asyncio.run(run())


def count_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    seen: list[str | None] = []
    authenticate = deps._authenticate

    def counted(state: Any, token: str | None) -> Any:
        seen.append(token)
        return authenticate(state, token)

    monkeypatch.setattr(deps, "_authenticate", counted)
    return seen


def test_concurrent_requests_with_one_uncached_key_share_one_lookup(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    engine.app.api.state.cp.callers.clear()
    lookups = count_lookups(monkeypatch)

    responses = storm(engine, engine.admin_key, 20)

    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.text for r in responses}) == 1
    assert lookups == [engine.admin_key]


def test_concurrent_requests_with_a_bad_key_are_each_refused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    lookups = count_lookups(monkeypatch)

    responses = storm(engine, "cp_not-a-real-key", 10)

    assert [r.status_code for r in responses] == [401] * 10
    assert 1 <= len(lookups) <= 10
    assert storm(engine, "cp_not-a-real-key", 1)[0].status_code == 401

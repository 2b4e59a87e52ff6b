"""`/readyz` says whether the server can reach its database within a short budget: 200
while it can, 503 in the spec's envelope while its connection pool is exhausted, and 200
again once connections come back. `/healthz` only says the process answers.

Runs on SQLite and PostgreSQL (`CLUSTERPLANE_TEST_DATABASE`).
"""

from __future__ import annotations

import time
from contextlib import ExitStack

from tests.support.engine import Engine


def test_readiness_follows_whether_the_database_can_be_reached(engine: Engine):
    assert engine.client.get("/readyz").json() == {"status": "ok", "database": "ok"}
    pool = engine.app.engine.pool
    with ExitStack() as held:
        for _ in range(pool.size() + pool._max_overflow):  # type: ignore[attr-defined]
            held.enter_context(engine.app.engine.connect())
        started = time.monotonic()
        response = engine.client.get("/readyz")
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert "database" in error["message"]
        assert took < 4.0, took
        assert engine.client.get("/healthz").status_code == 200
    deadline = time.monotonic() + 40  # a probe stuck on the pool gets its connection now
    while engine.client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)

"""The floor under figure 2's create: what a create cannot avoid, measured on this machine.

Whatever its code, a create of an 8-GPU cluster (1) is a request, which costs at least what
`/healthz` costs the same server; (2) issues its credentials: an EC CA and client key pair,
two certificates, the kubeconfig and their seals (`cluster_secrets.provision`); and (3) has
the database run its statements. (3) is measured by capturing the SQL of one real create,
as SQLite traces it (values inlined), on a database seeded as figure 2's, and running that
text again on a copy, in a transaction rolled back after each run: the database's own
work, with no Python building the statements. (SQLite's trace repeats a statement's text
once for each trigger it fires; repeats are run once.)

Validation, placement, the ORM, the response and the framework beyond `/healthz` are all
above this floor, so `/healthz` CPU over the floor is the best ratio a create could reach.

    python -m benchmarks.create_floor
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event

from benchmarks.profile import InProcess
from benchmarks.support import CREDENTIALS_KEY
from clusterplane.db.rows import ClusterRow
from clusterplane.services.access.ids import new_uuid
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.clusters.cluster_secrets import provision

ROUNDS = 7


@dataclass(frozen=True)
class CreateFloor:
    credentials_ms: float  # CPU to issue and seal one cluster's credentials
    statements_ms: float  # CPU of the database running one create's statements
    statements: int

    def with_request(self, request_ms: float) -> float:
        """The floor of a create on a server whose `/healthz` costs `request_ms`."""
        return request_ms + self.credentials_ms + self.statements_ms


def _cpu_ms(work: Callable[[], object], count: int) -> float:
    """Median over ROUNDS of the CPU milliseconds per call of `work`."""
    for _ in range(count // 10):
        work()
    samples = []
    for _ in range(ROUNDS):
        start = time.process_time()
        for _ in range(count):
            work()
        samples.append((time.process_time() - start) * 1000 / count)
    return statistics.median(samples)


def _credentials_ms() -> float:
    box = SecretBox(CREDENTIALS_KEY)
    now = datetime.now(UTC)

    def issue() -> None:
        cluster_id = new_uuid()
        cluster = ClusterRow(
            id=cluster_id,
            name="floor",
            api_server_url=f"https://{cluster_id[:8]}.floor.clusters.local:6443",
            oidc_config=None,
            cluster_config=None,
        )
        provision(cluster, box, now)

    return _cpu_ms(issue, 100)


def _traced_create(workdir: Path) -> tuple[Path, list[str]]:
    """A copy of a seeded database, and the statements one create ran on the original."""
    app = InProcess(workdir)
    try:
        create = app.request("create")
        for _ in range(5):
            create()
        app.app.engine.dispose()  # the statements are traced on new connections
        copy = workdir / "floor-copy.db"
        for suffix in ("", "-wal"):
            source = workdir / f"profile.db{suffix}"
            if source.exists():
                shutil.copy(source, workdir / f"floor-copy.db{suffix}")
        traced: list[str] = []

        @event.listens_for(app.app.engine, "connect")
        def trace(connection: sqlite3.Connection, _record: object) -> None:
            connection.set_trace_callback(traced.append)

        assert create().status == 200
    finally:
        app.close()
    runs = [s for i, s in enumerate(traced) if i == 0 or s != traced[i - 1]]
    return copy, [s for s in runs if s not in ("BEGIN IMMEDIATE", "BEGIN", "COMMIT")]


def _statements_ms(database: Path, statements: list[str]) -> float:
    connection = sqlite3.connect(database, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        connection.execute(f"PRAGMA {pragma}")

    def replay() -> None:
        connection.execute("BEGIN IMMEDIATE")
        for statement in statements:
            connection.execute(statement).fetchall()
        connection.execute("ROLLBACK")

    try:
        return _cpu_ms(replay, 200)
    finally:
        connection.close()


def measure(workdir: Path) -> CreateFloor:
    workdir.mkdir(parents=True, exist_ok=True)
    database, statements = _traced_create(workdir)
    return CreateFloor(_credentials_ms(), _statements_ms(database, statements), len(statements))


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        floor = measure(Path(workdir))
    print(
        f"credentials {floor.credentials_ms:.3f} ms, {floor.statements} statements "
        f"{floor.statements_ms:.3f} ms (CPU per create, beside the request itself)"
    )


if __name__ == "__main__":
    main()

"""Seeding a database with many Ready clusters fast, by bulk inserts.

`prepare_database` runs what a server does on first start (migrations, fleet sync, the
admin key) through the composition root. `seed_ready_clusters` then writes clusters as
the lifecycle controller leaves them once Ready, row for row: the cluster with its
credentials and kubeconfig, its phase history, three control-plane VMs and its GPU
workers (each with its five node phases and simulated driver state) on hosts of the
fleet, which are marked allocated. Everything goes in with executemany (SQLite) or
PostgreSQL's multi-row inserts, in chunks, so 10,000 clusters take seconds, not the
minutes the API would need. The audit trail (`events`) is not seeded: nothing reads it
on these paths.

Each cluster's stored response (`services/clusters/cluster_documents.py`) is then rendered
by `store_documents`, as a running server's documents refresher would have rendered it
once the cluster was quiet: the benchmarks measure the steady state of a fleet of Ready
clusters. On PostgreSQL the revision triggers are held off while the rows are copied in
(millions of rows would each fire one) and the revisions written directly, as the
triggers would have left them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import sessionmaker

from benchmarks.fleetgen import DRIVER_ID, GPU_TYPE, REGION
from benchmarks.support import CREDENTIALS_KEY
from clusterplane.app import build
from clusterplane.db.engine import make_engine
from clusterplane.db.prepared import read_snapshot
from clusterplane.db.rows import (
    ClusterPhaseTransitionRow,
    ClusterRow,
    HostRow,
    MembershipRow,
    NodePhaseTransitionRow,
    NodeRow,
    ProjectRow,
    UserRow,
)
from clusterplane.domain.enums import ClusterPhase, HostState, NodePhase, NodeRole
from clusterplane.domain.lifecycle import bring_up_sequence, status_for
from clusterplane.services.access.auth import (
    ADMIN_USER,
    DEFAULT_ORG_ID,
    DEFAULT_PROJECT_ID,
    generate_key_text,
)
from clusterplane.services.access.sealing import SecretBox
from clusterplane.services.clusters import cluster_documents
from clusterplane.services.clusters.cluster_secrets import seal_kube_config, sealed_credentials
from clusterplane.services.clusters.credentials import (
    ClusterCredentials,
    api_server_url,
    build_kubeconfig,
    issue_cluster_credentials,
)
from clusterplane.settings import CredentialSettings, Settings

CHUNK = 5000
CREATE_PROJECT = "proj_creates"  # creates go here, so the listed project keeps its size
# The create of figure 2 and of `benchmarks.profile`: one 8-GPU cluster.
CREATE_BODY = {
    "cluster_name": "tp",
    "billing_type": "ON_DEMAND",
    "gpu_type": GPU_TYPE,
    "num_gpus": 8,
    "region": REGION,
    "nvidia_version_id": DRIVER_ID,
    "project_id": CREATE_PROJECT,
}
NODE_PHASES = (
    NodePhase.PENDING,
    NodePhase.SCHEDULING,
    NodePhase.BOOTING,
    NodePhase.BOOTSTRAPPING,
    NodePhase.RUNNING,
)


def prepare_database(url: str, fleet: Path, admin_key: str) -> None:
    """Migrate, sync the fleet and register the admin key, as a first server start does."""
    settings = Settings(
        database_url=url,
        fleet_file=fleet,
        admin_api_key=admin_key,
        run_controllers=False,
        credentials=CredentialSettings(key=CREDENTIALS_KEY),
    )
    application = build(settings)
    application.engine.dispose()


def add_project(engine: Engine, project_id: str, now: datetime) -> None:
    """A second project of the default organisation, with the admin user as a member."""
    with engine.begin() as conn:
        admin = conn.scalar(select(UserRow.id).where(UserRow.name == ADMIN_USER))
        conn.execute(
            insert(ProjectRow),
            [
                {
                    "id": project_id,
                    "organization_id": DEFAULT_ORG_ID,
                    "name": project_id,
                    "slug": project_id,
                    "created_at": now,
                }
            ],
        )
        conn.execute(
            insert(MembershipRow), [{"user_id": admin, "project_id": project_id, "role": "owner"}]
        )


@dataclass
class Template:
    """What every seeded cluster shares: credentials and a kubeconfig of realistic size,
    stored sealed under the benchmarks' credentials key, as the servers they run store
    a cluster's (each sealed for its own cluster: a sealed value opens only there)."""

    credentials: ClusterCredentials
    kube_config: str
    issued_at: datetime
    box: SecretBox

    @staticmethod
    def make(now: datetime, box: SecretBox | None = None) -> Template:
        """`box`: the sealing of the server that will read them (the benchmarks' key)."""
        creds = issue_cluster_credentials(cluster_id="template", now=now)
        kube = build_kubeconfig(
            cluster_id="template",
            cluster_name="template",
            server_url=api_server_url(
                cluster_id="template", region=REGION, base_domain="clusters.clusterplane.local"
            ),
            credentials=creds,
        )
        return Template(creds, kube, now, box or SecretBox(CREDENTIALS_KEY))

    def stored(self, cluster_id: str) -> dict[str, Any]:
        """The `credentials` and `kube_config` columns of cluster `cluster_id`."""
        return {
            "credentials": sealed_credentials(
                cluster_id, self.credentials, self.box, self.issued_at
            ),
            "kube_config": seal_kube_config(cluster_id, self.kube_config, self.box),
        }


@dataclass
class Batch:
    clusters: list[dict[str, Any]]
    cluster_phases: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    node_phases: list[dict[str, Any]]
    hosts: list[dict[str, Any]]


def cluster_row(
    cid: str, project_id: str, name: str, gpus: int, when: datetime, t: Template
) -> Any:
    return {
        "id": cid,
        "project_id": project_id,
        "organization_id": DEFAULT_ORG_ID,
        "name": name,
        "cluster_type": "KUBERNETES",
        "region": REGION,
        "gpu_type": GPU_TYPE,
        "billing_type": "ON_DEMAND",
        "phase": ClusterPhase.READY,
        "status": status_for(ClusterPhase.READY),
        "num_gpus": gpus,
        "num_reserved_gpus": 0,
        "num_capacity_pool_gpus": 0,
        "capacity_pool_id": None,
        "desired_preemptible_gpus": 0,
        "num_cpu_workers": 0,
        "cuda_version": "12.8",
        "nvidia_driver_version": "570",
        "nvidia_driver_version_id": DRIVER_ID,
        "os_image": "ubuntu-22.04",
        "duration_hours": None,
        "reservation_start_time": None,
        "reservation_end_time": None,
        "install_traefik": False,
        "slurm_shm_size_gib": None,
        "slurm_image": None,
        "auto_scale": False,
        "auto_scale_max_gpus": None,
        "add_ons": [],
        "cluster_config": None,
        "oidc_config": None,
        "acceptance_tests_params": {"enabled": True},
        "api_server_url": f"https://{cid[:8]}.{REGION}.clusters.clusterplane.local:6443",
        **t.stored(cid),
        "control_plane_ready": True,
        "seed": 0,
        "step_state": None,
        "created_at": when,
        "updated_at": when + timedelta(minutes=25),
        "first_ready_at": when + timedelta(minutes=25),
        "delete_requested_at": None,
        "deleted_at": None,
        "next_reconcile_at": None,
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
    }


def _node(
    cid: str, role: NodeRole, ordinal: int, when: datetime, host: Any | None
) -> dict[str, Any]:
    cp = role == NodeRole.CONTROL_PLANE
    return {
        "id": str(uuid.uuid4()),
        "cluster_id": cid,
        "role": role,
        "ordinal": ordinal,
        "node_name": f"{'cp' if cp else 'gpu-dp'}-{cid[:5]}-{ordinal}",
        "instance_id": str(uuid.uuid4()),
        "host_id": None if host is None else host.id,
        "host_name": f"{REGION}-cp-{cid[:8]}-{ordinal}" if host is None else host.name,
        "phase": NodePhase.RUNNING,
        "status": "Running",
        "num_cpu_cores": 16 if cp else 208,
        "num_gpus": 0 if cp else 8,
        "memory_gib": 64.0 if cp else 2048.0,
        "networks": [f"100.64.{ordinal}.{ordinal + 1}/10" if host is None else f"{host.ip}/12"],
        "public_ipv4": None,
        "slurm_worker_hostname": None,
        "preemptible": False,
        "auto_remediation_enabled": True,
        "marked_for_deletion": False,
        "removal_reason": None,
        "origin": "bring_up",
        "provider_state": {
            "launched_at": when.isoformat(),
            "scheduling": 10.0,
            "booting": 180.0,
            "bootstrapping": 200.0,
        },
        "created_at": when,
        "deleted_at": None,
    }


@dataclass(frozen=True)
class FreeHost:
    id: str
    name: str
    ip: str


def free_hosts(engine: Engine, count: int) -> list[FreeHost]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(HostRow.id, HostRow.name, HostRow.ip_address)
            .where(HostRow.state == HostState.AVAILABLE, HostRow.cluster_id.is_(None))
            .order_by(HostRow.fabric, HostRow.block, HostRow.rack, HostRow.name)
            .limit(count)
        ).all()
    if len(rows) < count:
        raise RuntimeError(f"the fleet has {len(rows)} free hosts; {count} needed")
    return [FreeHost(*row) for row in rows]


def _batches(
    project_id: str,
    workers: Sequence[int],
    hosts: Sequence[FreeHost],
    start: datetime,
    template: Template,
    prefix: str,
) -> Iterator[Batch]:
    batch = Batch([], [], [], [], [])
    host_index = 0
    for index, count in enumerate(workers):
        cid = str(uuid.uuid4())
        when = start + timedelta(seconds=index)
        batch.clusters.append(
            cluster_row(cid, project_id, f"{prefix}-{index:06d}", count * 8, when, template)
        )
        sequence = bring_up_sequence(has_volume=False, acceptance_tests=True, nccl_tests=count > 1)
        for step, phase in enumerate(sequence):
            batch.cluster_phases.append(
                {
                    "cluster_id": cid,
                    "phase": phase,
                    "transition_time": when + timedelta(minutes=3 * step),
                }
            )
        nodes = [_node(cid, NodeRole.CONTROL_PLANE, i, when, None) for i in range(3)]
        for ordinal in range(count):
            host = hosts[host_index]
            host_index += 1
            node = _node(cid, NodeRole.GPU_WORKER, ordinal, when, host)
            nodes.append(node)
            batch.hosts.append({"b_id": host.id, "b_cluster": cid, "b_node": node["id"]})
        for node in nodes:
            batch.nodes.append(node)
            for step, phase in enumerate(NODE_PHASES):
                batch.node_phases.append(
                    {
                        "node_row_id": node["id"],
                        "phase": phase,
                        "transition_time": when + timedelta(minutes=2 * step),
                    }
                )
        if len(batch.clusters) >= CHUNK // 5:
            yield batch
            batch = Batch([], [], [], [], [])
    if batch.clusters:
        yield batch


def _write(conn: Connection, batch: Batch) -> None:
    if conn.dialect.name == "postgresql":
        _write_postgres(conn, batch)
        return
    conn.execute(insert(ClusterRow), batch.clusters)
    conn.execute(insert(ClusterPhaseTransitionRow), batch.cluster_phases)
    conn.execute(insert(NodeRow), batch.nodes)
    conn.execute(insert(NodePhaseTransitionRow), batch.node_phases)
    if batch.hosts:
        conn.execute(
            update(HostRow)
            .where(HostRow.id == bindparam("b_id"))
            .values(
                state=HostState.ALLOCATED,
                cluster_id=bindparam("b_cluster"),
                node_row_id=bindparam("b_node"),
            ),
            batch.hosts,
        )


def _naive(value: Any) -> Any:
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def _json(value: Any) -> Any:
    return None if value is None else orjson.dumps(value).decode()


def _text(value: Any) -> Any:
    return None if value is None else str(value)  # a plain str, not a StrEnum


def _converter(rows: list[dict[str, Any]], column: str) -> Any:
    """How to hand one column to COPY, judged by its first non-null value."""
    for row in rows:
        value = row[column]
        if value is None:
            continue
        if isinstance(value, datetime):
            return _naive
        if isinstance(value, dict | list):
            return _json
        if isinstance(value, str) and type(value) is not str:
            return _text
        return None
    return None


def _copy(cursor: Any, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    plan = [(c, _converter(rows, c)) for c in columns]
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] if f is None else f(row[c]) for c, f in plan])


def _write_postgres(conn: Connection, batch: Batch) -> None:
    """COPY: several times faster than multi-row INSERTs for millions of rows."""
    with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute("SET LOCAL session_replication_role = replica")  # no triggers
        _copy(cursor, "clusters", batch.clusters)
        _copy(
            cursor,
            "cluster_revisions",
            [{"cluster_id": c["id"], "revision": 1, "rendered": 0} for c in batch.clusters],
        )
        _copy(cursor, "cluster_phase_transitions", batch.cluster_phases)
        _copy(cursor, "nodes", batch.nodes)
        _copy(cursor, "node_phase_transitions", batch.node_phases)
        cursor.execute(
            "CREATE TEMP TABLE bench_hosts (id text, cluster_id text, node_row_id text) "
            "ON COMMIT DROP"
        )
        _copy(
            cursor,
            "bench_hosts",
            [
                {"id": h["b_id"], "cluster_id": h["b_cluster"], "node_row_id": h["b_node"]}
                for h in batch.hosts
            ],
        )
        cursor.execute(
            "UPDATE hosts SET state = %s, cluster_id = b.cluster_id, node_row_id = b.node_row_id "
            "FROM bench_hosts b WHERE hosts.id = b.id",
            (str(HostState.ALLOCATED),),
        )


def seed_ready_clusters(
    engine: Engine,
    *,
    project_id: str = DEFAULT_PROJECT_ID,
    workers: Sequence[int],
    prefix: str = "bench",
    start: datetime | None = None,
    documents: bool = True,
    box: SecretBox | None = None,
) -> int:
    """One Ready cluster per entry of `workers` (its number of 8-GPU workers); returns
    the number of node rows written. `documents`: also store their rendered responses;
    `box`: the sealing of the server that reads them (default: the benchmarks' key)."""
    start = start or datetime.now(UTC) - timedelta(days=1)
    template = Template.make(start, box)
    hosts = free_hosts(engine, sum(workers))
    written = 0
    for batch in _batches(project_id, workers, hosts, start, template, prefix):
        with engine.begin() as conn:
            _write(conn, batch)
        written += len(batch.nodes)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))  # as autovacuum would, on a database in service
    if documents:
        store_documents(engine)
    return written


def store_documents(engine: Engine, batch: int = 500) -> int:
    """Render and store the response of every cluster whose stored one is behind, as the
    documents refresher does; returns how many were stored."""
    sessions = sessionmaker(bind=engine, expire_on_commit=False)
    now = datetime.now(UTC)
    stored = 0
    while True:
        with read_snapshot(sessions) as reader:
            behind = list(cluster_documents.behind(reader, now=now, limit=batch))
        if not behind:
            return stored
        stored += cluster_documents.render_and_store(sessions, behind, now=now)


def seed_requests_database(
    url: str, fleet: Path, clusters: int, *, now: datetime, prefix: str = "bench"
) -> str:
    """The database figure 2 and `benchmarks.profile` send requests to: migrated on the
    fleet of `fleet`, `clusters` Ready clusters in the default project (five workers for
    every four clusters) and the empty project creates go to. Returns the admin key."""
    key = generate_key_text()
    prepare_database(url, fleet, key)
    engine = make_engine(url)
    try:
        seed_ready_clusters(
            engine, workers=worker_counts(clusters, clusters * 5 // 4), prefix=prefix
        )
        add_project(engine, CREATE_PROJECT, now)
    finally:
        engine.dispose()
    return key


def worker_counts(clusters: int, nodes: int) -> list[int]:
    """`clusters` clusters sharing `nodes` GPU workers as evenly as possible (>= 1 each)."""
    if nodes < clusters:
        raise ValueError("every cluster needs at least one worker")
    base, extra = divmod(nodes, clusters)
    # Spread the larger clusters through the list rather than at its end.
    return [base + (i + 1) * extra // clusters - i * extra // clusters for i in range(clusters)]

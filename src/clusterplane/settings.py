"""One typed settings tree, built once (by the CLI or a test) and passed down.

Nothing reads the environment below this module and `clusterplane.configuration`, which
fills the tree from a TOML file, CLUSTERPLANE_* variables and flags. The comment block
above a field (or after it, on its line) is that field's documentation in
docs/configuration.md; `metadata` bounds ("min", "max", "gt", "choices", "min_length" of a
string, "networks" for CIDR lists, "file" for a file that must exist, "at_most" a sibling
field, and "form": a regular expression each string must match, with "form_doc" naming it
and "example" a value that does) are checked at start, and "secret" fields are masked
wherever settings are shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

DEFAULT_STATE_DIR = Path(".clusterplane")

# Field metadata for `clusterplane.configuration`: the domain of a value, checked at start.
POSITIVE = {"gt": 0}
NON_NEGATIVE = {"min": 0}
AT_LEAST_ONE = {"min": 1}
SHARE = {"min": 0, "max": 1}
PORT = {"min": 1, "max": 65535}
SECRET = {"secret": True}
NETWORKS = {"networks": True}  # each value a CIDR network ("10.0.0.0/8", "::1/128")
EXISTING_FILE = {"file": True}


def default_database_url(state_dir: Path = DEFAULT_STATE_DIR) -> str:
    return f"sqlite:///{state_dir / 'clusterplane.db'}"


@dataclass(frozen=True)
class ServerSettings:
    # Address the API listens on.
    host: str = "127.0.0.1"
    # TCP port the API listens on.
    port: int = field(default=8080, metadata=PORT)
    # Largest request body accepted; a larger one gets 413.
    max_body_bytes: int = field(default=1024 * 1024, metadata=AT_LEAST_ONE)
    # Base domain used in generated API-server URLs of clusters (kubeconfig `server`).
    cluster_base_domain: str = "clusters.clusterplane.local"
    # Wall seconds a hot read (GET one cluster) may be answered from memory; any write
    # by this server drops it at once, so this bounds only how late another replica's
    # writes show. 0 turns the cache off.
    read_cache_seconds: float = field(default=1.0, metadata=NON_NEGATIVE)
    # Responses of one (non-admin) API key being answered at once; more get 429. 0: no bound.
    max_inflight_per_key: int = field(default=8, metadata=NON_NEGATIVE)
    # A client that takes no bytes of a response for this long is disconnected.
    send_timeout_seconds: float = field(default=30.0, metadata=POSITIVE)
    # /readyz answers 503 when the database gives no connection within this budget.
    readiness_timeout_seconds: float = field(default=2.0, metadata=POSITIVE)
    # Wall seconds an authenticated key is remembered (services/access/caller_cache.py). A key
    # revoked, expired or changed through another replica stops working here within
    # this bound; through this server, at once.
    caller_cache_seconds: float = field(default=2.0, metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class EngineSettings:
    """Background reconciliation: how often controllers look for due work (wall seconds)."""

    # How often a controller looks for due rows when it was not nudged.
    poll_interval_seconds: float = field(default=0.1, metadata=POSITIVE)
    # A controller's lease on a row; another replica takes the row over after it lapses.
    lease_seconds: float = field(default=15.0, metadata=POSITIVE)
    # Rows one controller pass takes at most.
    batch_size: int = field(default=50, metadata=AT_LEAST_ONE)
    # Run acceptance tests during bring-up unless the create request says otherwise.
    acceptance_tests_by_default: bool = True
    # Fleet seconds an approved or requested repair waits before it cordons the node.
    remediation_grace_seconds: float = field(default=1800.0, metadata=NON_NEGATIVE)
    # Fleet seconds a preempted node keeps serving before its host is taken back.
    preemption_drain_seconds: float = field(default=300.0, metadata=NON_NEGATIVE)

    @property
    def preemption_drain(self) -> timedelta:
        return timedelta(seconds=self.preemption_drain_seconds)


@dataclass(frozen=True)
class HealthSettings:
    """Automatic remediation and its safety rails (fleet seconds and shares of 1)."""

    # A cluster stops automatic repair while more than this share of its workers is unhealthy.
    max_unhealthy_share: float = field(default=0.4, metadata=SHARE)
    # At most this share of the fleet's hosts is being repaired (cordoned onwards) at once.
    max_fleet_remediation_share: float = field(default=0.1, metadata=SHARE)
    # At most this many of one project's nodes are being repaired at once (and never the
    # whole fleet cap, when it has room for more than one): a tenant's own repairs wait
    # for each other, not other tenants' repairs.
    max_project_repairs: int = field(default=4, metadata=AT_LEAST_ONE)
    # No new automatic repair of a node this long after its last one ended (spec §2.8).
    cooldown_seconds: float = field(default=1800.0, metadata=NON_NEGATIVE)
    # A repair that ended this long ago no longer makes the next one stronger.
    escalation_window_seconds: float = field(default=86400.0, metadata=NON_NEGATIVE)
    # How long a quarantined host is away for hardware repair before its return check.
    host_repair_seconds: float = field(default=2 * 86400.0, metadata=NON_NEGATIVE)
    # Idle (unallocated, available) hosts get a DCGM check this often; 0 turns it off.
    idle_check_interval_seconds: float = field(default=0.0, metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class SimulationSettings:
    """The simulated fleet: `time_scale` > 1 runs fleet time faster than wall time."""

    # Fleet seconds per wall second: 600 turns a 10-minute bring-up into 1 s.
    time_scale: float = field(default=1.0, metadata=POSITIVE)
    # Seed of the simulated fleet's random choices.
    seed: int = 0
    # Multiplies every simulated step duration; 0 makes every step instantaneous.
    duration_factor: float = field(default=1.0, metadata=NON_NEGATIVE)


REGION_PATH = {
    "form": r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}=/\S*",
    "form_doc": "REGION=/ABSOLUTE/PATH",
    "example": ("us-west-2=/mnt/shared/clusterplane", "agents-1=/srv/volumes"),
}


@dataclass(frozen=True)
class StorageSettings:
    """Operator limits on shared volumes (whole TiB), and where a region's volumes live;
    region capacity is in the fleet file."""

    # Smallest volume a create or resize may ask for.
    min_volume_tib: int = field(default=1, metadata={"min": 1, "at_most": "max_volume_tib"})
    # Largest volume a create or resize may ask for.
    max_volume_tib: int = field(default=1024, metadata=AT_LEAST_ONE)
    # Regions whose volumes are directories of a shared filesystem (NFS, Lustre, Weka...)
    # that this server and every host of the region mount, as REGION=PATH: PATH is that
    # directory as this server sees it (each host's agent names it in `node.shared_fs`),
    # and a volume is PATH/<volume id>. Other regions keep the default storage driver.
    shared_directories: tuple[str, ...] = field(default=(), metadata=REGION_PATH)
    # A shared-directory volume's size: "auto" enforces it with project quotas where the
    # filesystem has them (XFS or ext4 mounted with prjquota, and xfs_quota or setquota
    # installed) and records it elsewhere; "required" fails a volume it cannot enforce;
    # "off" only records it.
    shared_directory_quotas: str = field(
        default="auto", metadata={"choices": ("auto", "required", "off")}
    )


@dataclass(frozen=True)
class CapacitySettings:
    """Bounds on what tenants share: how far ahead a booking may start, and the per-project
    limits that hold where the operator set none (shares of one region, 0 to 1)."""

    # A reservation may start at most this many days ahead (fleet time).
    booking_horizon_days: float = field(default=365.0, metadata=POSITIVE)
    # A project's preemptible GPU targets in one region and GPU type: at most this share of
    # that region's GPUs of that type, unless its quota says otherwise.
    default_preemptible_share: float = field(default=0.25, metadata=SHARE)
    # A project's shared volumes in one region: at most this share of the region's storage,
    # unless its quota says otherwise.
    default_storage_share: float = field(default=0.25, metadata=SHARE)

    @property
    def booking_horizon(self) -> timedelta:
        return timedelta(days=self.booking_horizon_days)


@dataclass(frozen=True)
class CredentialSettings:
    """Encryption at rest of cluster private keys, and SSH certificate lifetimes.

    `key` is the server secret (32+ characters) that seals every private key and kubeconfig
    in the database; `previous_keys` still open what older keys sealed, until an operator
    re-seals them (`POST /admin/v1/credentials/reseal`) and drops them. Without a key
    (library and test use: `clusterplane serve` always has one, from the environment or
    ./.clusterplane/credentials-key) they are stored unencrypted, with a warning in the log.
    """

    # The server secret (32+ characters) sealing private keys and kubeconfigs at rest;
    # unset: `clusterplane serve` keeps one in .clusterplane/credentials-key.
    key: str | None = field(default=None, metadata=SECRET)
    # Older server keys that still open what they sealed, until a reseal.
    previous_keys: tuple[str, ...] = field(default=(), metadata=SECRET)
    # Lifetime of an SSH certificate when the request names none.
    ssh_certificate_seconds: int = field(
        default=3600, metadata={"min": 1, "at_most": "ssh_certificate_max_seconds"}
    )
    # Longest SSH certificate a request may ask for.
    ssh_certificate_max_seconds: int = field(default=86_400, metadata=AT_LEAST_ONE)


@dataclass(frozen=True)
class PlacementSettings:
    """The operator's placement policy, on top of what the fleet file says."""

    # True lets one cluster span fabrics in every region when no single fabric fits
    # (the fleet file can allow it per region or fleet-wide instead).
    allow_cross_fabric: bool = False


@dataclass(frozen=True)
class AgentSettings:
    """Node agents: enrollment, signed requests, long-polls and silence (wall seconds).

    Agents run on wall time whatever the fleet clock's scale, so every duration here is
    wall seconds.
    """

    # An agent silent this long makes its host Unknown (a health signal, never a repair).
    silence_grace_seconds: float = field(default=30.0, metadata=POSITIVE)
    # How long a long-poll for a newer assignment waits before answering "no change".
    long_poll_seconds: float = field(default=25.0, metadata=POSITIVE)
    # How often a waiting long-poll looks at the database again (other replicas' writes).
    long_poll_recheck_seconds: float = field(default=1.0, metadata=POSITIVE)
    # At most this many agents wait at once per server process; more are told to retry.
    max_long_polls: int = field(default=2000, metadata=AT_LEAST_ONE)
    # Signed requests of one host being answered at once (its long-poll, status, health
    # and check reports); more get 429. 0: no bound.
    max_inflight_per_host: int = field(default=8, metadata=NON_NEGATIVE)
    # A signed request's timestamp may be this far from the server's clock.
    clock_skew_seconds: float = field(default=120.0, metadata=POSITIVE)
    # Lifetime of a join token created without --ttl.
    join_token_default_ttl_seconds: float = field(default=1800.0, metadata=POSITIVE)
    # The longest lifetime a join token may be given.
    join_token_max_ttl_seconds: float = field(default=7 * 86400.0, metadata=POSITIVE)
    # Operator bound on join tokens not yet used, revoked or expired.
    max_open_join_tokens: int = field(default=1000, metadata=AT_LEAST_ONE)


@dataclass(frozen=True)
class SlurmSettings:
    """SLURM clusters on agent hosts: where their daemons keep state, and their ports."""

    # Each cluster's directory on its hosts is `<state_dir>/<cluster>` (config, spool,
    # state, logs, munge key); the same path on every host.
    state_dir: str = "/var/lib/clusterplane/slurm"
    # slurmctld's port on the controller host.
    controller_port: int = field(default=6817, metadata=PORT)
    # slurmd's port on every worker.
    slurmd_port: int = field(default=6818, metadata=PORT)
    # The account slurmctld runs as (it must exist on control-plane hosts).
    slurm_user: str = "slurm"
    # A worker silent this long is marked down (not responding) by slurmctld.
    slurmd_timeout_seconds: int = field(default=60, metadata={"min": 1, "max": 3600})
    # The most nodes one cluster's slurmctld accepts (dynamic nodes).
    max_node_count: int = field(default=1024, metadata=AT_LEAST_ONE)


@dataclass(frozen=True)
class KubernetesSettings:
    """KUBERNETES clusters on agent hosts (docs/kubernetes.md): what their hosts run.

    Which binaries a host runs is the host's own business: `[runtimes.kubernetes]
    binaries` in its agent.toml (else they are found on its PATH).
    """

    # The version every control-plane program and kubelet must report (`--version`,
    # e.g. "v1.20.2"); empty: whatever the hosts have.
    version: str = ""
    # The API server's port on the control-plane host (the kubeconfig's server).
    api_port: int = field(default=6443, metadata=PORT)
    # Pods' addresses: each worker gets the /24 of this 127.x network that its address
    # picks (the lo127 pod network of the agent's runtime).
    pod_network: str = "127.64.0.0/16"
    # The Services' cluster IP range.
    service_network: str = "10.96.0.0/16"
    # A node whose kubelet is silent this long is NotReady (controller-manager).
    node_grace_seconds: int = field(default=40, metadata={"min": 2, "max": 3600})
    # How often each kubelet reports its node's status.
    node_status_seconds: int = field(default=10, metadata={"min": 1, "max": 300})
    # A drain that PodDisruptionBudgets still hold after this long ends by deleting the
    # node anyway (its pods go with it).
    drain_deadline_seconds: float = field(default=600.0, metadata=POSITIVE)
    # Image tarballs (paths on the workers) imported into containerd before the kubelet
    # starts; on a fleet with a registry, none.
    images: tuple[str, ...] = ()
    # containerd's pod sandbox image.
    sandbox_image: str = "registry.k8s.io/pause:3.2"


@dataclass(frozen=True)
class WebhookSettings:
    """Event delivery to the endpoints projects and the operator register (docs/webhooks.md).

    Deliveries run on wall time, whatever the fleet clock's scale; every duration here is
    wall seconds.
    """

    # The longest one delivery attempt may take, from connecting to the response's
    # status; a slower receiver is cut off and the attempt counts as failed.
    timeout_seconds: float = field(default=10.0, metadata={"gt": 0, "max": 60})
    # Attempts of one delivery before it is `failed` (a replay starts it again).
    max_attempts: int = field(default=8, metadata={"min": 1, "max": 50})
    # The wait after the first failed attempt; it doubles after each further failure
    # (times a random factor of 0.75 to 1), up to `retry_max_seconds`.
    retry_base_seconds: float = field(
        default=10.0, metadata={"gt": 0, "at_most": "retry_max_seconds"}
    )
    # The longest wait between two attempts.
    retry_max_seconds: float = field(default=3600.0, metadata=POSITIVE)
    # Deliveries one server process sends at once.
    max_concurrent: int = field(default=32, metadata=AT_LEAST_ONE)
    # Deliveries to one endpoint in flight at once (all replicas together): a receiver
    # that hangs holds at most this many.
    max_concurrent_per_endpoint: int = field(default=2, metadata=AT_LEAST_ONE)
    # Deliveries of one project in flight at once (all replicas together), so one
    # project's slow receivers leave room for every other project's.
    max_concurrent_per_project: int = field(default=4, metadata=AT_LEAST_ONE)
    # Endpoints one project may register (and the operator, fleet-wide).
    max_endpoints_per_project: int = field(default=10, metadata=AT_LEAST_ONE)
    # Deliveries of one project waiting to be sent; past it, new events are not queued
    # for its endpoints (each endpoint counts what it missed; the event log keeps them).
    max_pending_per_project: int = field(default=1000, metadata=AT_LEAST_ONE)
    # Finished deliveries (and their attempts) are deleted this long after they ended.
    retention_seconds: float = field(default=7 * 86400.0, metadata=POSITIVE)
    # How often new events and due retries are looked for.
    poll_interval_seconds: float = field(default=0.5, metadata=POSITIVE)
    # Networks besides public addresses that receivers may be in (CIDR list, such as
    # ["10.20.0.0/16"]); other private addresses are refused. Link-local (169.254.0.0/16,
    # where cloud metadata lives), multicast and reserved addresses are always refused.
    allowed_networks: tuple[str, ...] = field(default=(), metadata=NETWORKS)
    # Networks whose receivers may use plain http:// (such as ["127.0.0.0/8"] for a local
    # test receiver); they count as allowed networks. Every other receiver needs https://.
    http_networks: tuple[str, ...] = field(default=(), metadata=NETWORKS)
    # PEM file of the certificate authorities receivers' certificates are checked against
    # (a private CA); unset: the public CAs httpx trusts (certifi's bundle).
    ca_file: Path | None = field(default=None, metadata=EXISTING_FILE)


@dataclass(frozen=True)
class LogSettings:
    """What the server writes to standard error."""

    # Lowest level written.
    level: str = field(
        default="info", metadata={"choices": ("debug", "info", "warning", "error", "critical")}
    )
    # `text` (one readable line a record) or `json` (one object a line, with request ids).
    format: str = field(default="text", metadata={"choices": ("text", "json")})


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics at `GET /metrics` (docs/metrics.md). They are fleet-wide figures
    (every project's clusters, the hosts, the repairs), so by default no tenant key reads
    them: only an admin API key or the scrape-only `token`."""

    # Serve `GET /metrics`; false: no such route, and no request or row counting.
    enabled: bool = True
    # Only an admin API key or `metrics.token` may read /metrics (401 without a key, 403
    # with a tenant key). false: anyone who can reach the port may; bind the server where
    # only Prometheus can, as the figures span every project.
    require_key: bool = True
    # A bearer token that reads /metrics and nothing else, for Prometheus
    # (`authorization: {credentials_file: ...}`); unset: admin API keys only.
    token: str | None = field(default=None, metadata={**SECRET, "min_length": 24})
    # Wall seconds the figures read from the database (clusters, hosts, open repairs, due
    # rows) are reused between scrapes; scrapes meanwhile share one read. 0: every scrape reads.
    cache_seconds: float = field(default=5.0, metadata=NON_NEGATIVE)


@dataclass(frozen=True)
class ConsoleSettings:
    """The web console at `/` and its live updates (`GET /console/v1/stream`)."""

    # Serve the console's page and assets; the API is served either way.
    enabled: bool = True
    # Wall seconds between two reads of what changed, per open stream (one short read
    # transaction each; no database connection is held in between).
    stream_poll_seconds: float = field(default=1.0, metadata={"min": 0.05})
    # Wall seconds of silence after which a stream sends a comment, so that proxies and
    # clients see it is alive.
    stream_heartbeat_seconds: float = field(default=15.0, metadata=POSITIVE)
    # Wall seconds after which the server ends a stream; the console opens a new one at
    # once. A stopping server waits for its open streams, so this bounds its shutdown.
    stream_max_seconds: float = field(default=60.0, metadata=POSITIVE)
    # Streams one API key may have open at once; one more gets 429.
    max_streams_per_key: int = field(default=3, metadata=AT_LEAST_ONE)
    # Streams the server keeps open at once, all keys together; one more gets 429.
    max_streams: int = field(default=500, metadata=AT_LEAST_ONE)


@dataclass(frozen=True)
class Settings:
    # SQLAlchemy URL of the database: SQLite (one server) or PostgreSQL (replicas).
    database_url: str = field(default_factory=default_database_url)
    # Fleet YAML (docs/fleet-file.md); unset: the built-in fleet.
    fleet_file: Path | None = None
    # The bootstrap admin key, registered on first start; unset: generated and shown once.
    admin_api_key: str | None = field(default=None, metadata=SECRET)
    server: ServerSettings = field(default_factory=ServerSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    simulation: SimulationSettings = field(default_factory=SimulationSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    capacity: CapacitySettings = field(default_factory=CapacitySettings)
    credentials: CredentialSettings = field(default_factory=CredentialSettings)
    placement: PlacementSettings = field(default_factory=PlacementSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    agents: AgentSettings = field(default_factory=AgentSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    # False serves the API only; another replica runs the controllers.
    run_controllers: bool = True
    # How long a create with the same idempotency key answers the first result.
    replay_window_seconds: float = field(default=600.0, metadata=NON_NEGATIVE)

    @staticmethod
    def admin_key_from_env(environ: dict[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        value = env.get("CLUSTERPLANE_ADMIN_API_KEY", "").strip()
        return value or None

    @staticmethod
    def credentials_from_env(environ: dict[str, str] | None = None) -> CredentialSettings:
        """CLUSTERPLANE_CREDENTIALS_KEY and CLUSTERPLANE_PREVIOUS_CREDENTIALS_KEYS (comma list)."""
        env = os.environ if environ is None else environ
        key = env.get("CLUSTERPLANE_CREDENTIALS_KEY", "").strip() or None
        previous = env.get("CLUSTERPLANE_PREVIOUS_CREDENTIALS_KEYS", "")
        return CredentialSettings(
            key=key, previous_keys=tuple(k.strip() for k in previous.split(",") if k.strip())
        )

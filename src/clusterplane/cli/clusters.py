"""`clusterplane clusters ...`: users' cluster commands over the public API.

    clusterplane clusters create --name N --region R --gpu-type G --num-gpus N
        --billing-type B [--nvidia-version-id ID | --cuda-version V --nvidia-driver-version V]
        [--cluster-type T] [--duration-days D] [--volume VOLUME_ID] [...]
        [--no-wait] [--interval S] [--timeout S]
    clusterplane clusters list [--project-id P]
    clusterplane clusters get CLUSTER_ID
    clusterplane clusters scale CLUSTER_ID [--num-gpus N] [--num-preemptible-gpus N]
        [--num-reserved-gpus N] [--wait] [--interval S] [--timeout S]
    clusterplane clusters delete CLUSTER_ID [--wait] [--interval S] [--timeout S]
    clusterplane clusters watch CLUSTER_ID [--interval S] [--timeout S]
    (every command also takes --json, --base-url, --api-key)

`create` shows the phases until the cluster is Ready or fails (cli/progress.py); without
a version selector it takes the region's only NVIDIA version from the catalog.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from clusterplane.cli import common, displays, output, progress
from clusterplane.cli.exits import OK, TIMED_OUT, USAGE, CliError
from clusterplane.cli.http import Api, ApiError
from clusterplane.domain.enums import BillingType, ClusterType, GpuType

CLUSTERS = progress.CLUSTERS
LIST_COLUMNS: tuple[output.Column, ...] = (
    ("CLUSTER_ID", output.field("cluster_id")),
    ("NAME", output.field("cluster_name")),
    ("STATUS", output.field("status")),
    ("TYPE", output.field("cluster_type")),
    ("REGION", output.field("region")),
    ("GPU_TYPE", output.field("gpu_type")),
    ("GPUS", output.field("num_gpus")),
    ("BILLING", output.field("billing_type")),
    ("CREATED", output.field("created_at")),
)
NODE_COLUMNS: tuple[output.Column, ...] = (
    ("NODE_ID", output.field("node_id")),
    ("ROLE", output.field("role")),
    ("STATUS", output.field("status")),
    ("PHASE", output.field("phase", shorten=True)),
    ("HOST", output.field("host_name")),
    ("GPUS", output.field("num_gpus")),
    ("INSTANCE_ID", output.field("instance_id")),
)
VOLUME_COLUMNS: tuple[output.Column, ...] = (
    ("VOLUME_ID", output.field("volume_id")),
    ("NAME", output.field("volume_name")),
    ("SIZE_TIB", output.field("size_tib")),
    ("STATUS", output.field("status")),
)
# create flag -> wire field, for the optional values passed through as given.
CREATE_OPTIONAL = {
    "nvidia_version_id": "nvidia_version_id",
    "cuda_version": "cuda_version",
    "nvidia_driver_version": "nvidia_driver_version",
    "cluster_type": "cluster_type",
    "duration_days": "duration_days",
    "volume": "volume_id",
    "num_reserved_gpus": "num_reserved_gpus",
    "num_preemptible_gpus": "num_preemptible_gpus",
    "capacity_pool_id": "capacity_pool_id",
    "num_capacity_pool_gpus": "num_capacity_pool_gpus",
    "auto_scale_max_gpus": "auto_scale_max_gpus",
    "reservation_start_time": "reservation_start_time",
    "reservation_end_time": "reservation_end_time",
    "slurm_shm_size_gib": "slurm_shm_size_gib",
    "slurm_image": "slurm_image",
    "project_id": "project_id",
}


def _follow_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="poll period (2)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="give up (exit 6)"
    )


def register(commands: Any) -> None:
    actions = common.group(commands, "clusters", "create, follow, scale and delete clusters", "op")
    _register_create(actions)
    lister = common.leaf(actions, "list", "the project's clusters", list_clusters)
    lister.add_argument("--project-id", default=None, help="default: the key's project")
    common.leaf(actions, "get", "one cluster with its nodes", get).add_argument("cluster_id")
    scale = common.leaf(actions, "scale", "change a cluster's GPU counts", scale_cluster)
    scale.add_argument("cluster_id")
    scale.add_argument("--num-gpus", type=int, default=None)
    scale.add_argument("--num-preemptible-gpus", type=int, default=None)
    scale.add_argument("--num-reserved-gpus", type=int, default=None)
    scale.add_argument("--wait", action="store_true", help="follow until the nodes settle")
    _follow_flags(scale)
    delete = common.leaf(actions, "delete", "delete a cluster", delete_cluster)
    delete.add_argument("cluster_id")
    delete.add_argument("--wait", action="store_true", help="wait until it is gone")
    _follow_flags(delete)
    watch = common.leaf(actions, "watch", "follow a cluster until it is Ready", watch_cluster)
    watch.add_argument("cluster_id")
    _follow_flags(watch)


def _register_create(actions: Any) -> None:
    parser = common.leaf(actions, "create", "create a cluster and follow it to Ready", create)
    parser.add_argument("--name", required=True, help="cluster name")
    parser.add_argument("--region", required=True)
    parser.add_argument("--gpu-type", required=True, choices=[g.value for g in GpuType])
    parser.add_argument("--num-gpus", type=int, required=True, help="a multiple of 8")
    parser.add_argument("--billing-type", required=True, choices=[b.value for b in BillingType])
    parser.add_argument("--cluster-type", choices=[t.value for t in ClusterType])
    parser.add_argument("--nvidia-version-id", help="default: the region's only one")
    parser.add_argument("--cuda-version", help="with --nvidia-driver-version")
    parser.add_argument("--nvidia-driver-version", help="with --cuda-version")
    parser.add_argument("--duration-days", type=int, help="RESERVED billing")
    parser.add_argument("--reservation-start-time", help="RFC 3339 (SCHEDULED_CAPACITY)")
    parser.add_argument("--reservation-end-time", help="RFC 3339")
    parser.add_argument("--volume", metavar="VOLUME_ID", help="attach this shared volume")
    parser.add_argument("--num-reserved-gpus", type=int)
    parser.add_argument("--num-preemptible-gpus", type=int)
    parser.add_argument("--capacity-pool-id")
    parser.add_argument("--num-capacity-pool-gpus", type=int)
    parser.add_argument("--auto-scale-max-gpus", type=int, help="turns auto-scaling on")
    parser.add_argument("--slurm-shm-size-gib", type=int, help="required for SLURM")
    parser.add_argument("--slurm-image")
    parser.add_argument("--install-traefik", action="store_true", default=None)
    parser.add_argument("--project-id", help="default: the key's project")
    parser.add_argument("--no-wait", action="store_true", help="print the cluster and return")
    _follow_flags(parser)


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "cluster_name": args.name,
        "region": args.region,
        "gpu_type": args.gpu_type,
        "num_gpus": args.num_gpus,
        "billing_type": args.billing_type,
    }
    for flag, wire in CREATE_OPTIONAL.items():
        if getattr(args, flag) is not None:
            body[wire] = getattr(args, flag)
    if args.auto_scale_max_gpus is not None:
        body["auto_scale"] = True
    if args.install_traefik:
        body["install_traefik"] = True
    return body


def _default_version(api: Api, region: str) -> str | None:
    """The region's NVIDIA version when it has exactly one; None for an unknown region."""
    catalog = api.call("GET", "/v1/compute/regions")["regions"]
    found = next((r for r in catalog if r.get("name") == region), None)
    if found is None:
        return None  # the server names the problem
    versions = found.get("driver_versions") or []
    if len(versions) == 1:
        return str(versions[0]["id"])
    offered = ", ".join(
        f"{v['id']} (CUDA {v['cuda_version']}, driver {v['nvidia_driver_version']})"
        for v in versions
    )
    raise CliError(USAGE, f"region {region} offers {offered or 'no version'}: --nvidia-version-id")


def create(api: Api, args: argparse.Namespace) -> int:
    body = create_body(args)
    if not any(k in body for k in ("nvidia_version_id", "cuda_version", "nvidia_driver_version")):
        version = _default_version(api, args.region)
        if version is not None:
            body["nvidia_version_id"] = version
    cluster = api.call("POST", CLUSTERS, body=body)
    if args.no_wait:
        output.emit(sys.stdout, output.dumps(cluster) if args.json else describe(cluster))
        return OK
    display = displays.pick(args.json, sys.stdout)
    display.created(cluster)
    return progress.follow(
        api, display, cluster, interval=args.interval, timeout=args.timeout, history=True
    )


def list_clusters(api: Api, args: argparse.Namespace) -> int:
    answer = api.call("GET", CLUSTERS, params={"projectId": args.project_id})
    text = output.dumps(answer) if args.json else output.table(answer["clusters"], LIST_COLUMNS)
    output.emit(sys.stdout, text)
    return OK


def _node_rows(cluster: progress.Cluster) -> list[dict[str, Any]]:
    return [
        {**node, "role": role, "phase": progress.last_phase(node)}
        for role, node in progress.nodes(cluster)
        if not node.get("deleted_at")
    ]


def describe(cluster: progress.Cluster) -> str:
    """A cluster for people: its facts, its live nodes, its volumes."""
    facts = output.block(
        [
            ("Cluster", f"{cluster['cluster_name']} ({cluster['cluster_id']})"),
            ("Status", cluster.get("status")),
            ("Type", cluster.get("cluster_type")),
            ("Region", cluster.get("region")),
            ("GPUs", f"{cluster.get('num_gpus')} x {cluster.get('gpu_type')}"),
            (
                "Preemptible GPUs",
                f"{cluster.get('allocated_preemptible_gpus')} of "
                f"{cluster.get('desired_preemptible_gpus')}",
            ),
            ("Billing", cluster.get("billing_type")),
            (
                "CUDA / driver",
                f"{cluster.get('cuda_version')} / {cluster.get('nvidia_driver_version')}",
            ),
            ("Project", cluster.get("project_id")),
            ("Created", cluster.get("created_at")),
            ("First ready", cluster.get("first_ready_at")),
            ("Reservation ends", cluster.get("reservation_end_time")),
        ]
    )
    parts = [facts, "", output.table(_node_rows(cluster), NODE_COLUMNS)]
    if cluster.get("volumes"):
        parts += ["", output.table(cluster["volumes"], VOLUME_COLUMNS)]
    return "\n".join(parts)


def get(api: Api, args: argparse.Namespace) -> int:
    cluster = api.call("GET", f"{CLUSTERS}/{args.cluster_id}")
    output.emit(sys.stdout, output.dumps(cluster) if args.json else describe(cluster))
    return OK


def scale_cluster(api: Api, args: argparse.Namespace) -> int:
    counts = {
        "num_gpus": args.num_gpus,
        "num_preemptible_gpus": args.num_preemptible_gpus,
        "num_reserved_gpus": args.num_reserved_gpus,
    }
    body = {k: v for k, v in counts.items() if v is not None}
    if not body:
        raise CliError(
            USAGE, "scale needs --num-gpus, --num-preemptible-gpus or --num-reserved-gpus"
        )
    cluster = api.call("PUT", f"{CLUSTERS}/{args.cluster_id}", body=body)
    if not args.wait:
        output.emit(sys.stdout, output.dumps(cluster) if args.json else describe(cluster))
        return OK
    display = displays.pick(args.json, sys.stdout)
    return progress.follow(api, display, cluster, interval=args.interval, timeout=args.timeout)


def delete_cluster(api: Api, args: argparse.Namespace) -> int:
    answer = api.call("DELETE", f"{CLUSTERS}/{args.cluster_id}")
    if args.wait:
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        while _exists(api, args.cluster_id):
            if deadline is not None and time.monotonic() >= deadline:
                raise CliError(
                    TIMED_OUT, f"cluster {args.cluster_id} is not gone after {args.timeout:g}s"
                )
            time.sleep(args.interval)
    done = "deleted" if args.wait else "is being deleted"
    output.emit(
        sys.stdout, output.dumps(answer) if args.json else f"cluster {answer['cluster_id']} {done}"
    )
    return OK


def _exists(api: Api, cluster_id: str) -> bool:
    try:
        api.call("GET", f"{CLUSTERS}/{cluster_id}")
    except ApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def watch_cluster(api: Api, args: argparse.Namespace) -> int:
    cluster = api.call("GET", f"{CLUSTERS}/{args.cluster_id}")
    display = displays.pick(args.json, sys.stdout)
    return progress.follow(api, display, cluster, interval=args.interval, timeout=args.timeout)

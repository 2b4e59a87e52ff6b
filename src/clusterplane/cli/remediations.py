"""`clusterplane remediations ...`: node repairs over the public API.

    clusterplane remediations inbox [--cluster CLUSTER_ID]   proposals awaiting review
    clusterplane remediations list CLUSTER_ID [--instance I] [--state S]...
    clusterplane remediations get CLUSTER_ID REMEDIATION_ID
    clusterplane remediations create CLUSTER_ID NODE --mode M [--reason TEXT]
    clusterplane remediations approve CLUSTER_ID REMEDIATION_ID [--comment C] [--mode M]
    clusterplane remediations reject CLUSTER_ID REMEDIATION_ID [--comment C]
    clusterplane remediations cancel CLUSTER_ID REMEDIATION_ID
    (every command also takes --json, --base-url, --api-key)

The inbox is every PENDING_APPROVAL remediation of the key's clusters (or of one), read
cluster by cluster, all pages. NODE is an instance id, node id or host name. Modes are
given without their prefix (`VM_ONLY`); the full wire value works too. Remediation ids
are unique, so actions address them through the cluster with instance `-`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from clusterplane.cli import common, output
from clusterplane.cli.exits import API_ERROR, OK, CliError
from clusterplane.cli.http import Api, ApiError
from clusterplane.cli.progress import CLUSTERS
from clusterplane.domain.enums import RemediationMode, RemediationState

MODE_PREFIX = "REMEDIATION_MODE_"
MODES = [m.value.removeprefix(MODE_PREFIX) for m in RemediationMode]
PAGE_SIZE = 100
COLUMNS: tuple[output.Column, ...] = (
    ("ID", output.field("id")),
    ("CLUSTER_ID", output.field("cluster_id")),
    ("NODE", output.field("instance_name")),
    ("MODE", output.field("mode", shorten=True)),
    ("STATE", output.field("state")),
    ("TRIGGER", output.field("trigger", shorten=True)),
    ("REASON", output.field("reason")),
    ("CREATED", output.field("create_time")),
)


def _mode(text: str) -> str:
    return text.upper().removeprefix(MODE_PREFIX)


def _path(cluster_id: str, instance: str = "-", remediation_id: str | None = None) -> str:
    base = f"{CLUSTERS}/{cluster_id}/instances/{instance}/remediations"
    return base if remediation_id is None else f"{base}/{remediation_id}"


def register(commands: Any) -> None:
    actions = common.group(commands, "remediations", "node repairs: review and request", "op")
    inbox = common.leaf(actions, "inbox", "proposals awaiting your review", show_inbox)
    inbox.add_argument("--cluster", default=None, metavar="CLUSTER_ID", help="only this one")
    lister = common.leaf(actions, "list", "a cluster's remediations", list_remediations)
    lister.add_argument("cluster_id")
    lister.add_argument("--instance", default="-", help="one instance id (default: all)")
    states = [s.value for s in RemediationState]
    lister.add_argument("--state", action="append", choices=states, help="repeatable")
    getter = common.leaf(actions, "get", "one remediation", get_remediation)
    getter.add_argument("cluster_id")
    getter.add_argument("remediation_id")
    create = common.leaf(actions, "create", "ask for a node repair", create_remediation)
    create.add_argument("cluster_id")
    create.add_argument("node", help="instance id, node id or host name")
    create.add_argument("--mode", type=_mode, choices=MODES, required=True)
    create.add_argument("--reason", default=None)
    for name, text, handler in (
        ("approve", "approve a proposal (it becomes PENDING)", approve),
        ("reject", "reject a proposal (it becomes CANCELLED)", reject),
        ("cancel", "cancel a remediation that has not started", cancel),
    ):
        action = common.leaf(actions, name, text, handler)
        action.add_argument("cluster_id")
        action.add_argument("remediation_id")
        if name != "cancel":
            action.add_argument("--comment", default=None)
        if name == "approve":
            action.add_argument("--mode", type=_mode, choices=MODES, help="override the mode")


def _all_pages(api: Api, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = api.call("GET", path, params={**params, "page_size": PAGE_SIZE, "page_token": token})
        found += page["remediations"]
        token = page.get("next_page_token") or None
        if not page.get("has_next") or token is None:
            return found


def _print_list(args: argparse.Namespace, items: list[dict[str, Any]]) -> int:
    text = output.dumps({"remediations": items}) if args.json else output.table(items, COLUMNS)
    output.emit(sys.stdout, text)
    return OK


def show_inbox(api: Api, args: argparse.Namespace) -> int:
    if args.cluster is not None:
        cluster_ids = [args.cluster]
    else:
        cluster_ids = [c["cluster_id"] for c in api.call("GET", CLUSTERS)["clusters"]]
    items = [r for cid in cluster_ids for r in _waiting(api, cid, skip_gone=args.cluster is None)]
    return _print_list(args, items)


def _waiting(api: Api, cluster_id: str, *, skip_gone: bool) -> list[dict[str, Any]]:
    """A cluster's proposals awaiting review; none from a cluster deleted meanwhile."""
    waiting = {"state": RemediationState.PENDING_APPROVAL.value}
    try:
        return _all_pages(api, _path(cluster_id), waiting)
    except ApiError as exc:
        if exc.status == 404 and skip_gone:
            return []
        raise


def list_remediations(api: Api, args: argparse.Namespace) -> int:
    states = ",".join(args.state) if args.state else None
    items = _all_pages(api, _path(args.cluster_id, args.instance), {"state": states})
    return _print_list(args, items)


def _show(args: argparse.Namespace, item: dict[str, Any]) -> int:
    if args.json:
        output.emit(sys.stdout, output.dumps(item))
        return OK
    facts: list[tuple[str, object]] = [
        ("Remediation", item["id"]),
        ("Cluster", item["cluster_id"]),
        ("Node", f"{output.text(item.get('instance_name'))} ({item['instance_id']})"),
        ("Mode", output.short(item["mode"])),
        ("State", item["state"]),
        ("Trigger", output.short(item["trigger"])),
        ("Reason", item.get("reason")),
        ("Requested by", item.get("requested_by")),
        ("Reviewed by", item.get("reviewed_by")),
        ("Review comment", item.get("review_comment")),
        ("Created", item.get("create_time")),
        ("Error", item.get("error_message")),
    ]
    output.emit(sys.stdout, output.block(facts))
    return OK


def get_remediation(api: Api, args: argparse.Namespace) -> int:
    return _show(args, api.call("GET", _path(args.cluster_id, "-", args.remediation_id)))


def _instance_of(api: Api, cluster_id: str, node: str) -> str:
    """The instance id of a worker named by instance id, node id or host name."""
    cluster = api.call("GET", f"{CLUSTERS}/{cluster_id}")
    for worker in cluster.get("gpu_worker_nodes") or []:
        names = (worker.get("instance_id"), worker.get("node_id"), worker.get("host_name"))
        if node in names and worker.get("instance_id"):
            return str(worker["instance_id"])
    raise CliError(API_ERROR, f"cluster {cluster_id} has no GPU worker '{node}'")


def create_remediation(api: Api, args: argparse.Namespace) -> int:
    instance = _instance_of(api, args.cluster_id, args.node)
    body = {"mode": MODE_PREFIX + args.mode}
    if args.reason is not None:
        body["reason"] = args.reason
    made = api.call("POST", _path(args.cluster_id, instance), body=body)
    return _show(args, made)


def _act(api: Api, args: argparse.Namespace, verb: str, body: dict[str, Any] | None) -> int:
    path = f"{_path(args.cluster_id, '-', args.remediation_id)}/{verb}"
    return _show(args, api.call("POST", path, body=body))


def approve(api: Api, args: argparse.Namespace) -> int:
    body = {"comment": args.comment, "mode": MODE_PREFIX + args.mode if args.mode else None}
    return _act(api, args, "approve", {k: v for k, v in body.items() if v is not None})


def reject(api: Api, args: argparse.Namespace) -> int:
    return _act(api, args, "reject", {"comment": args.comment} if args.comment else {})


def cancel(api: Api, args: argparse.Namespace) -> int:
    return _act(api, args, "cancel", None)

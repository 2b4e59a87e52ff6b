"""`clusterplane capacity ...`: the operator's capacity commands, over the admin HTTP API.

    clusterplane capacity pools list
    clusterplane capacity pools show POOL_ID
    clusterplane capacity pools create --name N --region R --gpu-type G
        --starts-at T --ends-at T (--project-id P | --organization-id O)
        (--host NAME ... | --num-hosts N)
    clusterplane capacity pools delete POOL_ID
    clusterplane capacity calendar [--region R] [--gpu-type G]

The server is --url (or CLUSTERPLANE_URL, default http://127.0.0.1:8080) and the key is
--api-key (or CLUSTERPLANE_ADMIN_API_KEY). Answers print as JSON; an error prints the
server's message on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
BASE = "/admin/v1/capacity"


def add_commands(commands: Any) -> None:
    """Register `capacity` on the root parser's sub-commands."""
    capacity = commands.add_parser("capacity", help="capacity pools and the booking calendar")
    capacity.add_argument("--url", default=None, help=f"server (default {DEFAULT_URL})")
    capacity.add_argument("--api-key", default=None, help="admin key")
    what = capacity.add_subparsers(dest="capacity_command", required=True)
    pools = what.add_parser("pools", help="capacity pools").add_subparsers(
        dest="pools_command", required=True
    )
    pools.add_parser("list", help="every live pool")
    show = pools.add_parser("show", help="one pool")
    show.add_argument("pool_id")
    delete = pools.add_parser("delete", help="delete a pool no live cluster uses")
    delete.add_argument("pool_id")
    create = pools.add_parser("create", help="hold hosts for a project or organisation")
    create.add_argument("--name", required=True)
    create.add_argument("--region", required=True)
    create.add_argument("--gpu-type", required=True)
    create.add_argument("--starts-at", required=True, help="RFC 3339")
    create.add_argument("--ends-at", required=True, help="RFC 3339")
    owner = create.add_mutually_exclusive_group(required=True)
    owner.add_argument("--project-id")
    owner.add_argument("--organization-id")
    hosts = create.add_mutually_exclusive_group(required=True)
    hosts.add_argument("--host", action="append", dest="host_names", help="repeatable")
    hosts.add_argument("--num-hosts", type=int)
    calendar = what.add_parser("calendar", help="bookings per region and GPU type")
    calendar.add_argument("--region")
    calendar.add_argument("--gpu-type")


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any] | None, dict[str, str]]:
    """(method, path, JSON body, query) of the command."""
    if args.capacity_command == "calendar":
        query = {k: v for k, v in (("region", args.region), ("gpu_type", args.gpu_type)) if v}
        return "GET", f"{BASE}/calendar", None, query
    command = args.pools_command
    if command == "list":
        return "GET", f"{BASE}/pools", None, {}
    if command == "show":
        return "GET", f"{BASE}/pools/{args.pool_id}", None, {}
    if command == "delete":
        return "DELETE", f"{BASE}/pools/{args.pool_id}", None, {}
    body = {
        "name": args.name,
        "region": args.region,
        "gpu_type": args.gpu_type,
        "starts_at": args.starts_at,
        "ends_at": args.ends_at,
        "project_id": args.project_id,
        "organization_id": args.organization_id,
        "host_names": args.host_names,
        "num_hosts": args.num_hosts,
    }
    return "POST", f"{BASE}/pools", {k: v for k, v in body.items() if v is not None}, {}


def run(args: argparse.Namespace, client: httpx.Client | None = None) -> int:
    key = args.api_key or os.environ.get("CLUSTERPLANE_ADMIN_API_KEY", "")
    url = args.url or os.environ.get("CLUSTERPLANE_URL", DEFAULT_URL)
    method, path, body, query = _request(args)
    http = client or httpx.Client(base_url=url, timeout=30.0)
    try:
        response = http.request(
            method, path, json=body, params=query, headers={"Authorization": f"Bearer {key}"}
        )
    except httpx.HTTPError as exc:
        print(f"clusterplane: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        if client is None:
            http.close()
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": {"message": response.text}}
    if response.status_code >= 400:
        message = payload.get("error", {}).get("message", response.text)
        print(f"clusterplane: {response.status_code}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(payload, indent=2, sort_keys=True))
    return 0

"""`clusterplane admin ...`: the operator's commands, over the admin HTTP API.

    clusterplane admin [--url URL] [--api-key KEY] [--json] quotas list
    clusterplane admin quotas get PROJECT_ID
    clusterplane admin quotas set PROJECT_ID [MAX_GPUS] [--preemptible-gpus N]
                                 [--storage-tib N]   (each also "none": clear that limit)
    clusterplane admin quotas remove PROJECT_ID
    clusterplane admin hosts list [--region R] [--gpu-type T] [--state S] [--fabric F]
                                  [--block B] [--rack R] [--cluster-id C]
                                  [--draining | --not-draining] [--placeable | --unplaceable]
    clusterplane admin hosts drain|undrain|offline|online HOST   (id or name)
    clusterplane admin keys list [--user-id U] [--project-id P]   (never secrets or hashes)
    clusterplane admin keys create USER_ID PROJECT_ID [--name N] [--expires-in SECONDS]
    clusterplane admin keys revoke KEY_ID
    clusterplane admin join-tokens create --region R [--fabric F --block B --rack R]
                                          [--ttl 30m]   (the token is the last line)
    clusterplane admin join-tokens list
    clusterplane admin join-tokens revoke TOKEN_ID

The server is `--url` or CLUSTERPLANE_URL (default http://127.0.0.1:8080); the key is
`--api-key` or CLUSTERPLANE_ADMIN_API_KEY. An API error prints its message and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
HOST_ACTIONS = ("drain", "undrain", "offline", "online")
HOST_COLUMNS = (
    "name",
    "region",
    "fabric",
    "block",
    "rack",
    "state",
    "draining",
    "cluster_id",
    "driver",
)
TOKEN_COLUMNS = ("id", "region", "fabric", "block", "rack", "state", "expires_at", "host_id")
TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KEY_COLUMNS = ("id", "name", "user_id", "project_id", "is_admin", "status", "expires_at")
QUOTA_COLUMNS = (
    "project_id",
    "max_gpus",
    "used_gpus",
    "remaining_gpus",
    "max_preemptible_gpus",
    "used_preemptible_gpus",
    "allocated_preemptible_gpus",
    "max_storage_tib",
    "used_storage_tib",
)
UNSET = object()  # a limit left off the command line: the server keeps it
# Shown for a limit the project does not set itself: the default share applies.
DEFAULTED = {"max_preemptible_gpus": "default", "max_storage_tib": "default"}


def parse_ttl(text: str) -> float:
    """`90s`, `30m`, `12h`, `7d` or plain seconds."""
    unit = TTL_UNITS.get(text[-1:].lower()) if text else None
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _limit(text: str) -> int | None:
    """A limit on the command line: a whole number, or "none" to clear it."""
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number or 'none': {text!r}") from None


def register(commands: Any) -> None:
    """Add `admin` and its subcommands to the root parser's subcommands."""
    parser = commands.add_parser(
        "admin", help="operator commands (quotas, hosts, API keys, join tokens)"
    )
    parser.add_argument(
        "--url", default=None, help=f"server (default $CLUSTERPLANE_URL or {DEFAULT_URL})"
    )
    parser.add_argument("--api-key", default=None, help="default: $CLUSTERPLANE_ADMIN_API_KEY")
    parser.add_argument("--json", action="store_true", help="print the JSON answer")
    areas = parser.add_subparsers(dest="area", required=True)

    quotas = areas.add_parser("quotas", help="per-project GPU, preemptible and storage limits")
    q = quotas.add_subparsers(dest="action", required=True)
    q.add_parser("list", help="every project with a quota")
    for name in ("get", "remove"):
        q.add_parser(name).add_argument("project_id")
    setter = q.add_parser("set", help="set a project's limits (the others stay)")
    setter.add_argument("project_id")
    setter.add_argument("max_gpus", type=_limit, nargs="?", default=UNSET)
    setter.add_argument(
        "--preemptible-gpus", dest="max_preemptible_gpus", type=_limit, default=UNSET
    )
    setter.add_argument("--storage-tib", dest="max_storage_tib", type=_limit, default=UNSET)

    hosts = areas.add_parser("hosts", help="fleet hosts and their service state")
    h = hosts.add_subparsers(dest="action", required=True)
    lister = h.add_parser("list", help="hosts, filtered")
    for option in ("region", "gpu-type", "state", "fabric", "block", "rack", "cluster-id"):
        lister.add_argument(f"--{option}", default=None)
    drained = lister.add_mutually_exclusive_group()
    drained.add_argument("--draining", dest="draining", action="store_true", default=None)
    drained.add_argument("--not-draining", dest="draining", action="store_false")
    placeable = lister.add_mutually_exclusive_group()
    placeable.add_argument("--placeable", dest="placeable", action="store_true", default=None)
    placeable.add_argument("--unplaceable", dest="placeable", action="store_false")
    for action in HOST_ACTIONS:
        h.add_parser(action, help=f"{action} a host (by id or name)").add_argument("host")
    _register_keys(areas)
    _register_join_tokens(areas)


def _register_keys(areas: Any) -> None:
    keys = areas.add_parser("keys", help="API keys: list, create, revoke")
    k = keys.add_subparsers(dest="action", required=True)
    lister = k.add_parser("list", help="keys with their status (no secrets)")
    lister.add_argument("--user-id", default=None)
    lister.add_argument("--project-id", default=None)
    creator = k.add_parser("create", help="a new key; its secret is printed once")
    creator.add_argument("user_id")
    creator.add_argument("project_id")
    creator.add_argument("--name", default="")
    creator.add_argument(
        "--expires-in", type=int, default=None, metavar="SECONDS", help="default: never"
    )
    k.add_parser("revoke", help="stop a key working").add_argument("key_id")


def _register_join_tokens(areas: Any) -> None:
    tokens = areas.add_parser("join-tokens", help="one-time tokens for node agents to enroll")
    t = tokens.add_subparsers(dest="action", required=True)
    create = t.add_parser("create", help="issue a token; it is the last line printed")
    create.add_argument("--region", required=True)
    for option in ("fabric", "block", "rack"):
        create.add_argument(f"--{option}", default=None)
    create.add_argument("--ttl", type=parse_ttl, default=None, help="e.g. 30m (the default)")
    t.add_parser("list", help="every token, never its secret")
    t.add_parser("revoke", help="revoke a token").add_argument("token_id")


def _request(args: argparse.Namespace) -> tuple[str, str, dict[str, Any], dict[str, Any] | None]:
    """(method, path, query, body) of the command."""
    if args.area == "quotas":
        if args.action == "list":
            return "GET", "/admin/v1/quotas", {}, None
        path = f"/admin/v1/projects/{args.project_id}/quota"
        if args.action == "set":
            limits = ("max_gpus", "max_preemptible_gpus", "max_storage_tib")
            return (
                "PUT",
                path,
                {},
                {k: getattr(args, k) for k in limits if getattr(args, k) is not UNSET},
            )
        return ("GET" if args.action == "get" else "DELETE"), path, {}, None
    if args.area == "keys":
        return _key_request(args)
    if args.area == "join-tokens":
        if args.action == "create":
            body = {
                k: getattr(args, k)
                for k in ("region", "fabric", "block", "rack")
                if getattr(args, k) is not None
            }
            if args.ttl is not None:
                body["ttl_seconds"] = args.ttl
            return "POST", "/admin/v1/join-tokens", {}, body
        if args.action == "list":
            return "GET", "/admin/v1/join-tokens", {}, None
        return "DELETE", f"/admin/v1/join-tokens/{args.token_id}", {}, None
    if args.action == "list":
        query = {
            name: getattr(args, name.replace("-", "_"))
            for name in ("region", "gpu_type", "state", "fabric", "block", "rack", "cluster_id")
        }
        query["draining"] = args.draining
        query["placeable"] = args.placeable
        clean = {
            k: (str(v).lower() if isinstance(v, bool) else v)
            for k, v in query.items()
            if v is not None
        }
        return "GET", "/admin/v1/fleet/hosts", clean, None
    return "POST", f"/admin/v1/fleet/hosts/{args.host}/{args.action}", {}, None


def _key_request(
    args: argparse.Namespace,
) -> tuple[str, str, dict[str, Any], dict[str, Any] | None]:
    if args.action == "list":
        query = {"user_id": args.user_id, "project_id": args.project_id}
        return "GET", "/admin/v1/api-keys", {k: v for k, v in query.items() if v}, None
    if args.action == "create":
        body: dict[str, Any] = {
            "user_id": args.user_id,
            "project_id": args.project_id,
            "name": args.name,
        }
        if args.expires_in is not None:
            body["expires_in_seconds"] = args.expires_in
        return "POST", "/admin/v1/api-keys", {}, body
    return "POST", f"/admin/v1/api-keys/{args.key_id}/revoke", {}, None


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    return DEFAULTED.get(column, "-") if value is None else str(value)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    cells = [[_cell(r, c) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _render(args: argparse.Namespace, answer: dict[str, Any]) -> str:
    if args.json:
        return json.dumps(answer, indent=2, sort_keys=True)
    if "hosts" in answer:
        return _table(answer["hosts"], HOST_COLUMNS)
    if "quotas" in answer:
        return _table(answer["quotas"], QUOTA_COLUMNS)
    if "api_keys" in answer:
        return _table(answer["api_keys"], KEY_COLUMNS)
    if "api_key" in answer:  # a created key: the secret, shown once
        return f"{answer['id']}  {answer['api_key']}  expires: {answer['expires_at'] or 'never'}"
    if "join_tokens" in answer:
        return _table(answer["join_tokens"], TOKEN_COLUMNS)
    if args.area == "join-tokens":
        table = _table([answer], TOKEN_COLUMNS)
        if "token" in answer:  # shown once: the last line, for scripts to take
            return f"{table}\n\nJoin token (shown once):\n{answer['token']}"
        return table
    columns = {"quotas": QUOTA_COLUMNS, "keys": KEY_COLUMNS}.get(args.area, HOST_COLUMNS)
    return _table([answer], columns)


def run(args: argparse.Namespace, *, transport: httpx.BaseTransport | None = None) -> int:
    url = args.url or os.environ.get("CLUSTERPLANE_URL") or DEFAULT_URL
    key = args.api_key or os.environ.get("CLUSTERPLANE_ADMIN_API_KEY", "").strip()
    if not key:
        print(
            "clusterplane: no admin key (--api-key or CLUSTERPLANE_ADMIN_API_KEY)", file=sys.stderr
        )
        return 2
    method, path, query, body = _request(args)
    try:
        with httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            transport=transport,
        ) as client:
            response = client.request(method, path, params=query, json=body)
    except httpx.HTTPError as exc:
        print(f"clusterplane: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": {"message": response.text or f"HTTP {response.status_code}"}}
    if response.status_code >= 400:
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else str(answer)
        print(f"clusterplane: {message} (HTTP {response.status_code})", file=sys.stderr)
        return 1
    print(_render(args, answer))
    return 0

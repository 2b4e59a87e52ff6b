"""`clusterplane volumes ...`: users' shared volumes over the public API.

clusterplane volumes create --name N --region R --size-tib N
    [--lifecycle-independent | --no-lifecycle-independent] [--project-id P]
clusterplane volumes list [--project-id P]
clusterplane volumes get VOLUME_ID
clusterplane volumes resize VOLUME_ID --size-tib N
clusterplane volumes delete VOLUME_ID
(every command also takes --json, --base-url, --api-key)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from clusterplane.cli import common, output
from clusterplane.cli.exits import OK
from clusterplane.cli.http import Api

VOLUMES = "/v1/compute/clusters/storage/volumes"
COLUMNS: tuple[output.Column, ...] = (
    ("VOLUME_ID", output.field("volume_id")),
    ("NAME", output.field("volume_name")),
    ("SIZE_TIB", output.field("size_tib")),
    ("STATUS", output.field("status")),
)


def register(commands: Any) -> None:
    actions = common.group(commands, "volumes", "shared storage volumes", "op")
    create = common.leaf(actions, "create", "create a shared volume", create_volume)
    create.add_argument("--name", required=True)
    create.add_argument("--region", required=True)
    create.add_argument("--size-tib", type=int, required=True)
    create.add_argument(
        "--lifecycle-independent",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="outlives the clusters it is attached to (server default: yes)",
    )
    create.add_argument("--project-id", default=None, help="default: the key's project")
    lister = common.leaf(actions, "list", "the project's volumes", list_volumes)
    lister.add_argument("--project-id", default=None, help="default: the key's project")
    common.leaf(actions, "get", "one volume", get_volume).add_argument("volume_id")
    resize = common.leaf(actions, "resize", "grow or shrink a volume", resize_volume)
    resize.add_argument("volume_id")
    resize.add_argument("--size-tib", type=int, required=True)
    common.leaf(actions, "delete", "delete a detached volume", delete_volume).add_argument(
        "volume_id"
    )


def _show(args: argparse.Namespace, volume: dict[str, Any]) -> int:
    text = output.dumps(volume) if args.json else output.table([volume], COLUMNS)
    output.emit(sys.stdout, text)
    return OK


def create_volume(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "volume_name": args.name,
        "region": args.region,
        "size_tib": args.size_tib,
    }
    if args.lifecycle_independent is not None:
        body["is_lifecycle_independent"] = args.lifecycle_independent
    if args.project_id is not None:
        body["project_id"] = args.project_id
    return _show(args, api.call("POST", VOLUMES, body=body))


def list_volumes(api: Api, args: argparse.Namespace) -> int:
    answer = api.call("GET", VOLUMES, params={"projectId": args.project_id})
    text = output.dumps(answer) if args.json else output.table(answer["volumes"], COLUMNS)
    output.emit(sys.stdout, text)
    return OK


def get_volume(api: Api, args: argparse.Namespace) -> int:
    return _show(args, api.call("GET", f"{VOLUMES}/{args.volume_id}"))


def resize_volume(api: Api, args: argparse.Namespace) -> int:
    body = {"volume_id": args.volume_id, "size_tib": args.size_tib}
    return _show(args, api.call("PUT", VOLUMES, body=body))


def delete_volume(api: Api, args: argparse.Namespace) -> int:
    answer = api.call("DELETE", f"{VOLUMES}/{args.volume_id}")
    text = output.dumps(answer) if args.json else f"volume {args.volume_id} deleted"
    output.emit(sys.stdout, text)
    return OK

"""`clusterplane serve`: start the API server and controllers on the embedded default.

    clusterplane serve [--host H] [--port P] [--database-url URL] [--fleet FILE]
                       [--time-scale FACTOR] [--seed N] [--allow-cross-fabric]
    clusterplane admin ...   (operator commands over the admin API: see cli/admin.py)

The bootstrap admin key comes from CLUSTERPLANE_ADMIN_API_KEY when set (registered on
first start); otherwise one is generated on first start and printed once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from clusterplane.cli import admin
from clusterplane.errors import ClusterplaneError
from clusterplane.settings import (
    PlacementSettings,
    ServerSettings,
    Settings,
    SimulationSettings,
    default_database_url,
)


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="clusterplane", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API server and controllers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--database-url", default=None, help="default: SQLite under ./.clusterplane/"
    )
    serve.add_argument("--fleet", type=Path, default=None, help="fleet YAML (default: built-in)")
    serve.add_argument(
        "--time-scale",
        type=_positive,
        default=1.0,
        help="fleet clock speed-up: 600 turns a 10-minute bring-up into 1 s",
    )
    serve.add_argument("--seed", type=int, default=0, help="seed of the simulated fleet")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--allow-cross-fabric",
        action="store_true",
        help="let a cluster span fabrics when no single fabric fits (all regions)",
    )
    commands.add_parser("generate-key", help="print a fresh API key in the accepted format")
    admin.register(commands)
    return root


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        database_url=args.database_url or default_database_url(),
        fleet_file=args.fleet,
        admin_api_key=Settings.admin_key_from_env(),
        server=replace(ServerSettings(), host=args.host, port=args.port),
        simulation=SimulationSettings(time_scale=args.time_scale, seed=args.seed),
        placement=PlacementSettings(allow_cross_fabric=args.allow_cross_fabric),
    )


def _banner(settings: Settings, key: str | None) -> str:
    base = f"http://{settings.server.host}:{settings.server.port}"
    shown = key or settings.admin_api_key or "<the key printed on first start>"
    note = "   <- shown once; store it now" if key and not settings.admin_api_key else ""
    return f"""
clusterplane is serving on {base}  (fleet time x{settings.simulation.time_scale})
Admin API key: {shown}{note}

SDK:
  export TOGETHER_BASE_URL={base} TOGETHER_API_KEY={shown}
  python -c "from together import Together; print(Together().clusters.list())"
CLI:
  together clusters list-regions
  together clusters create --name demo --num-gpus 8 --region us-central-8 \\
      --billing-type ON_DEMAND --gpu-type H100_SXM --nvidia-version-id cu128-drv570-ubuntu2204
"""


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from clusterplane.app import build

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = settings_from(args)
    try:
        application = build(settings)
    except ClusterplaneError as exc:
        print(f"clusterplane: {exc.message}", file=sys.stderr)
        return 2
    print(_banner(settings, application.issued_admin_key), flush=True)
    uvicorn.run(
        application.api,
        host=settings.server.host,
        port=settings.server.port,
        log_level=args.log_level.lower(),
        access_log=False,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "admin":
        return admin.run(args)
    from clusterplane.services.auth import generate_key_text

    print(generate_key_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

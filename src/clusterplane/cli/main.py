"""`clusterplane serve`: start the API server and controllers on the embedded default.

    clusterplane serve [--host H] [--port P] [--database-url URL] [--fleet FILE]
                       [--time-scale FACTOR] [--seed N] [--allow-cross-fabric]
                       [--send-timeout SECONDS] [--max-inflight-per-key N]
                       [--agent-silence-seconds S] [--agent-long-poll-seconds S]
    clusterplane admin ...   (operator commands over the admin API: see cli/admin.py)

The bootstrap admin key comes from CLUSTERPLANE_ADMIN_API_KEY when set (registered on
first start, never printed); otherwise one is generated on first start and printed on
that start only. The key that seals cluster private keys at rest comes from
CLUSTERPLANE_CREDENTIALS_KEY when set; otherwise from ./.clusterplane/credentials-key,
created (mode 0600, folder 0700) on first start. A database sealed with a key the server
lacks stops the start (exit 2) with what to do.

    clusterplane ssh CLUSTER [NODE] [-- COMMAND...]  see clusterplane/cli/ssh.py
    clusterplane agent --server URL [--join-token TOKEN] --state-dir DIR [--config FILE]
                       the node agent of a host (see clusterplane/agent/)
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path

from clusterplane.cli import admin, capacity, ssh
from clusterplane.errors import ClusterplaneError
from clusterplane.settings import (
    DEFAULT_STATE_DIR,
    AgentSettings,
    CredentialSettings,
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
    serve.add_argument(
        "--send-timeout",
        type=_positive,
        default=ServerSettings.send_timeout_seconds,
        help="seconds a client may take no bytes of a response before it is disconnected",
    )
    serve.add_argument(
        "--max-inflight-per-key",
        type=int,
        default=ServerSettings.max_inflight_per_key,
        help="responses one (non-admin) API key may have in flight; more get 429 (0: no bound)",
    )
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--allow-cross-fabric",
        action="store_true",
        help="let a cluster span fabrics when no single fabric fits (all regions)",
    )
    serve.add_argument(
        "--agent-silence-seconds",
        type=_positive,
        default=AgentSettings.silence_grace_seconds,
        help="wall seconds without word from a node agent before its host is Unknown",
    )
    serve.add_argument(
        "--agent-long-poll-seconds",
        type=_positive,
        default=AgentSettings.long_poll_seconds,
        help="how long an agent's poll for a newer assignment waits",
    )
    commands.add_parser("generate-key", help="print a fresh API key in the accepted format")
    capacity.add_commands(commands)
    ssh.add_parser(commands)
    admin.register(commands)
    agent = commands.add_parser("agent", help="run the node agent of this host")
    agent.add_argument("--server", required=True, help="the control plane's URL")
    agent.add_argument("--join-token", default=None, help="needed on the first start only")
    agent.add_argument("--state-dir", type=Path, default=Path("/var/lib/clusterplane-agent"))
    agent.add_argument("--config", type=Path, default=None, help="agent config (TOML)")
    return root


def _credentials() -> CredentialSettings:
    """The sealing key: the environment's, else the one kept under ./.clusterplane/."""
    from clusterplane.db.engine import private_dir

    settings = Settings.credentials_from_env()
    if settings.key is not None:
        return settings
    path = DEFAULT_STATE_DIR / "credentials-key"
    private_dir(path.parent)
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another replica made it first
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48) + "\n")
    return replace(settings, key=path.read_text().strip())


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        database_url=args.database_url or default_database_url(),
        fleet_file=args.fleet,
        admin_api_key=Settings.admin_key_from_env(),
        credentials=_credentials(),
        server=replace(
            ServerSettings(),
            host=args.host,
            port=args.port,
            send_timeout_seconds=args.send_timeout,
            max_inflight_per_key=args.max_inflight_per_key,
        ),
        simulation=SimulationSettings(time_scale=args.time_scale, seed=args.seed),
        placement=PlacementSettings(allow_cross_fabric=args.allow_cross_fabric),
        agents=AgentSettings(
            silence_grace_seconds=args.agent_silence_seconds,
            long_poll_seconds=args.agent_long_poll_seconds,
        ),
    )


def _banner(settings: Settings, generated: str | None) -> str:
    """What a start prints: the admin key only when this start generated it (once)."""
    base = f"http://{settings.server.host}:{settings.server.port}"
    if generated is not None:
        line = f"Admin API key: {generated}   <- generated now and shown once; store it"
        shown = generated
    elif settings.admin_api_key is not None:
        line = "Admin API key: the one in CLUSTERPLANE_ADMIN_API_KEY"
        shown = "$CLUSTERPLANE_ADMIN_API_KEY"
    else:
        line = "Admin API key: the one printed on the first start"
        shown = "<your admin key>"
    return f"""
clusterplane is serving on {base}  (fleet time x{settings.simulation.time_scale})
{line}

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

    from clusterplane.api.send_timeout import with_send_timeout
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
        http=with_send_timeout(settings.server.send_timeout_seconds),
        log_level=args.log_level.lower(),
        access_log=False,
    )
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse a command line; for `ssh`, what follows ``--`` is the remote command."""
    own, remote = ssh.split_remote_command(argv)
    args = parser().parse_args(own)
    if args.command == "ssh":
        args.remote_command = remote
    elif remote:
        parser().error("'--' is only for `clusterplane ssh`")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "capacity":
        return capacity.run(args)
    if args.command == "ssh":
        return ssh.run(args)
    if args.command == "admin":
        return admin.run(args)
    if args.command == "agent":
        from clusterplane.agent import daemon

        return daemon.main(args.server, args.join_token, args.state_dir, args.config)
    from clusterplane.services.auth import generate_key_text

    print(generate_key_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

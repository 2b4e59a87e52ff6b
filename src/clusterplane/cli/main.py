"""`clusterplane serve`: start the API server and controllers on the embedded default.

    clusterplane serve [--config FILE] [--host H] [--port P] [--database-url URL]
                       [--fleet FILE] [--time-scale FACTOR] [--seed N] [--allow-cross-fabric]
                       [--send-timeout SECONDS] [--max-inflight-per-key N]
                       [--agent-silence-seconds S] [--agent-long-poll-seconds S]
                       [--log-level LEVEL] [--log-format text|json]
    clusterplane config show|docs   (settings: see cli/config.py, docs/configuration.md)
    clusterplane admin ...   (operator commands over the admin API: see cli/admin.py)

Settings come from defaults, the --config file, CLUSTERPLANE_* variables and flags, in
that order of precedence (clusterplane/configuration.py); a bad one stops the start
(exit 2) naming the setting.

The bootstrap admin key comes from CLUSTERPLANE_ADMIN_API_KEY when set (registered on
first start, never printed); otherwise one is generated on first start and printed on
that start only. The key that seals cluster private keys at rest comes from
CLUSTERPLANE_CREDENTIALS_KEY when set; otherwise from ./.clusterplane/credentials-key,
created (mode 0600, folder 0700) on first start. A database sealed with a key the server
lacks stops the start (exit 2) with what to do.

    clusterplane ssh CLUSTER [NODE] [-- COMMAND...]  see clusterplane/cli/ssh.py
    clusterplane clusters|volumes|remediations ...   users' commands over the public API
                       (cli/clusters.py, volumes.py, remediations.py; docs/cli.md)
    clusterplane completion bash|zsh                 a shell completion script
    clusterplane agent --server URL [--join-token TOKEN] --state-dir DIR [--config FILE]
                       the node agent of a host (see clusterplane/agent/)
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path

from clusterplane import logs
from clusterplane.cli import (
    admin,
    capacity,
    clusters,
    common,
    completion,
    config,
    remediations,
    ssh,
    volumes,
)
from clusterplane.configuration import ConfigError
from clusterplane.errors import ClusterplaneError
from clusterplane.settings import DEFAULT_STATE_DIR, CredentialSettings, Settings


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="clusterplane", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API server and controllers")
    config.add_serve_flags(serve)
    config.add_commands(commands)
    commands.add_parser("generate-key", help="print a fresh API key in the accepted format")
    capacity.add_commands(commands)
    ssh.add_parser(commands)
    admin.register(commands)
    clusters.register(commands)
    volumes.register(commands)
    remediations.register(commands)
    completion.add_parser(commands)
    agent = commands.add_parser("agent", help="run the node agent of this host")
    agent.add_argument("--server", required=True, help="the control plane's URL")
    agent.add_argument("--join-token", default=None, help="needed on the first start only")
    agent.add_argument("--state-dir", type=Path, default=Path("/var/lib/clusterplane-agent"))
    agent.add_argument("--config", type=Path, default=None, help="agent config (TOML)")
    return root


def _credentials(settings: CredentialSettings) -> CredentialSettings:
    """The sealing key: the configured one, else the one kept under ./.clusterplane/."""
    from clusterplane.db.engine import private_dir

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
    """Settings of this command line (ConfigError when one is bad), with the sealing key."""
    settings = config.load_for(args).settings
    return replace(settings, credentials=_credentials(settings.credentials))


def _banner(settings: Settings, generated: str | None) -> str:
    """What a start prints: the admin key only when this start generated it (once)."""
    base = f"http://{settings.server.host}:{settings.server.port}"
    if generated is not None:
        line = f"Admin API key: {generated}   <- generated now and shown once; store it"
        shown = generated
    elif settings.admin_api_key is not None:
        line = "Admin API key: the configured one (CLUSTERPLANE_ADMIN_API_KEY or the file's)"
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
CLI (install the official SDK and CLI with: pip install 'together[cli]'):
  together clusters list-regions
  together clusters create --name demo --num-gpus 8 --region us-central-8 \\
      --billing-type ON_DEMAND --gpu-type H100_SXM --nvidia-version-id cu128-drv570-ubuntu2204
"""


# The interpreter's GIL switch interval while serving (Python's default is 5 ms): a
# request's steps on the event loop wait behind a list or create running in a worker
# thread at most this long per hand-off. With 1 ms, GET's p99 under the mixed load of
# docs/performance.md (section 6) was 2.5 times lower, for no fewer requests served.
GIL_SWITCH_SECONDS = 0.001


def tune_interpreter() -> None:
    """What serving sets in the interpreter once the application is built: the GIL switch
    interval, and the objects made at start-up (modules, the application, mappers,
    compiled statements) moved out of the cyclic collector's generations (`gc.freeze`),
    so a full collection walks only what was allocated since. Before, a controller pass
    that loaded a 16,384-GPU cluster's nodes (tens of thousands of objects) set off full
    collections of the whole heap, about 0.1 s each, two or three per bring-up."""
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    gc.collect()
    gc.freeze()


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from clusterplane.api.send_timeout import with_send_timeout
    from clusterplane.app import build

    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"clusterplane: bad setting {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log.level, settings.log.format)
    try:
        application = build(settings)
    except ClusterplaneError as exc:
        print(f"clusterplane: {exc.message}", file=sys.stderr)
        return 2
    print(_banner(settings, application.issued_admin_key), flush=True)
    tune_interpreter()
    uvicorn.run(
        application.api,
        host=settings.server.host,
        port=settings.server.port,
        http=with_send_timeout(settings.server.send_timeout_seconds),
        log_level=settings.log.level,
        log_config=None,  # records go through `logs.configure`'s handler
        access_log=False,  # `api.request_ids` writes one without headers
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


USER_COMMANDS = ("clusters", "volumes", "remediations")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command in USER_COMMANDS:
        return common.run(args)
    if args.command == "completion":
        return completion.run(args, parser())
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
    if args.command == "config":
        return config.run(args)
    from clusterplane.services.access.auth import generate_key_text

    print(generate_key_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

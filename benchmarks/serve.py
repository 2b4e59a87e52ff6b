"""The server the benchmarks drive: `clusterplane serve` plus the knobs a benchmark needs.

    python -m benchmarks.serve --port P --database-url URL --fleet FILE
                               [--duration-factor F] [--poll-interval S] [--no-controllers]
                               [--read-cache-seconds S] [--http auto|h11|httptools]
                               [--loop auto|asyncio|uvloop]

Same composition root (`clusterplane.app.build`), logging and uvicorn settings as the CLI
(one worker, the same interpreter tuning, `tune_interpreter`; logs at the default level,
`info`, so with the server's own access line per request; the send timeout on uvicorn's
fastest installed HTTP protocol and event loop; `--http`/`--loop` pick others, to compare stacks);
`--duration-factor 0` makes every simulated step instantaneous, so what is left of a
bring-up is the control plane's own overhead.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import uvicorn

from clusterplane import logs
from clusterplane.api.send_timeout import with_send_timeout
from clusterplane.app import build
from clusterplane.cli.main import tune_interpreter
from clusterplane.settings import EngineSettings, ServerSettings, Settings, SimulationSettings


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.serve")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--fleet", type=Path, required=True)
    parser.add_argument("--duration-factor", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.1)
    parser.add_argument("--no-controllers", action="store_true")
    parser.add_argument("--read-cache-seconds", type=float, default=None)
    parser.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    settings = Settings(
        database_url=args.database_url,
        fleet_file=args.fleet,
        admin_api_key=Settings.admin_key_from_env(),
        credentials=Settings.credentials_from_env(),
        server=replace(
            ServerSettings(),
            port=args.port,
            read_cache_seconds=(
                ServerSettings.read_cache_seconds
                if args.read_cache_seconds is None
                else args.read_cache_seconds
            ),
        ),
        engine=replace(EngineSettings(), poll_interval_seconds=args.poll_interval),
        simulation=SimulationSettings(duration_factor=args.duration_factor),
        run_controllers=not args.no_controllers,
    )
    logs.configure(settings.log.level, settings.log.format)
    application = build(settings)
    tune_interpreter()
    uvicorn.run(
        application.api,
        host="127.0.0.1",
        port=args.port,
        http=with_send_timeout(settings.server.send_timeout_seconds, args.http),
        loop=args.loop,
        log_level=settings.log.level,
        log_config=None,
        access_log=False,  # `api.request_ids` writes one
    )


if __name__ == "__main__":
    main()

"""What the user commands share: the options every one takes, the exit-code epilog of their
help, and the runner that opens the API, calls the command and turns failures into exit
codes (cli/exits.py).

A command module adds its subcommands with `parents=[options()]` and
`set_defaults(handler=...)`; a handler is `(api, args) -> exit code` and prints to
`sys.stdout`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from clusterplane.cli import output
from clusterplane.cli.exits import INTERRUPTED, CliError
from clusterplane.cli.http import Api

Handler = Callable[[Api, argparse.Namespace], int]
EXIT_CODES = """exit codes: 0 done, 2 usage or no API key, 3 the API refused (4xx), 4 server
failed or unreachable, 5 the cluster failed or was deleted while followed, 6 --timeout
passed, 130 interrupted. The API is --base-url or TOGETHER_BASE_URL
(default http://127.0.0.1:8080); the key is --api-key or TOGETHER_API_KEY."""


def options() -> argparse.ArgumentParser:
    """The options of every user command (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("--base-url", default=None, help="default: $TOGETHER_BASE_URL")
    common.add_argument("--api-key", default=None, help="default: $TOGETHER_API_KEY")
    return common


def group(commands: Any, name: str, help_text: str, dest: str) -> Any:
    """A command group (`clusters`, ...) whose help ends with the exit codes."""
    parser = commands.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")


def leaf(actions: Any, name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
    """One command of a group, with the common options and its handler."""
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=help_text, description=help_text, parents=[options()], epilog=EXIT_CODES
    )
    parser.set_defaults(handler=handler)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        with Api.from_options(args.base_url, args.api_key) as api:
            code: int = args.handler(api, args)
            return code
    except CliError as exc:
        if args.json and exc.body is not None:
            output.emit(sys.stdout, output.dumps(exc.body))
        print(f"clusterplane: {exc.message}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        print(
            "clusterplane: interrupted; the server carries on with what was asked", file=sys.stderr
        )
        return INTERRUPTED

"""`clusterplane config ...` and the settings side of `clusterplane serve`.

    clusterplane config show [--config FILE]   effective settings, their sources, secrets masked
    clusterplane config docs [--check]         write (or check) docs/configuration.md

`SERVE_FLAGS` are the `serve` flags that set a setting (they win over the file and the
environment); `load_for_serve` turns a command line into `Settings` or exits 2 with the
setting's path and what is wrong. docs/configuration.md is generated from the settings
tree (`render_docs`), so it cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from clusterplane import configuration
from clusterplane.configuration import ConfigError, Leaf, Loaded

DOCS_PATH = Path("docs/configuration.md")

# (flag, setting path, help): flags with a value, then switches (no value: true).
SERVE_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--host", "server.host", "address to listen on"),
    ("--port", "server.port", "port to listen on"),
    ("--database-url", "database_url", "default: SQLite under ./.clusterplane/"),
    ("--fleet", "fleet_file", "fleet YAML (default: built-in)"),
    ("--time-scale", "simulation.time_scale", "fleet clock speed-up: 600 makes 10 min 1 s"),
    ("--seed", "simulation.seed", "seed of the simulated fleet"),
    ("--send-timeout", "server.send_timeout_seconds", "seconds a stalled client is kept"),
    ("--max-inflight-per-key", "server.max_inflight_per_key", "responses a key may await"),
    ("--log-level", "log.level", "debug, info, warning, error or critical"),
    ("--log-format", "log.format", "text (default) or json"),
    ("--agent-silence-seconds", "agents.silence_grace_seconds", "silence before Unknown"),
    ("--agent-long-poll-seconds", "agents.long_poll_seconds", "how long an agent poll waits"),
)
SWITCHES: tuple[tuple[str, str, str], ...] = (
    ("--allow-cross-fabric", "placement.allow_cross_fabric", "let clusters span fabrics"),
)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_serve_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--config", type=Path, default=None, help="settings file (TOML)")
    for flag, path, text in SERVE_FLAGS:
        metavar = path.rsplit(".")[-1].upper()
        serve.add_argument(flag, default=None, metavar=metavar, help=f"{text} (setting {path})")
    for flag, path, text in SWITCHES:
        serve.add_argument(
            flag, action="store_const", const="true", default=None, help=f"{text} (setting {path})"
        )


def flag_values(args: argparse.Namespace) -> dict[str, str]:
    """The settings this command line sets, by path (as text, checked by the loader)."""
    found: dict[str, str] = {}
    for flag, path, _ in SERVE_FLAGS + SWITCHES:
        value = getattr(args, _dest(flag), None)
        if value is not None:
            found[path] = str(value)
    return found


def load_for(args: argparse.Namespace) -> Loaded:
    """Settings from `--config`, the environment and this command line's flags."""
    flags = flag_values(args) if args.command == "serve" else {}
    return configuration.load(args.config, os.environ, flags)


def add_commands(commands: Any) -> None:
    config = commands.add_parser("config", help="show settings or write their documentation")
    what = config.add_subparsers(dest="config_command", required=True)
    show = what.add_parser("show", help="effective settings with their sources")
    show.add_argument("--config", type=Path, default=None, help="settings file (TOML)")
    docs = what.add_parser("docs", help=f"write {DOCS_PATH} from the settings")
    docs.add_argument("--output", type=Path, default=DOCS_PATH)
    docs.add_argument("--check", action="store_true", help="exit 1 when the file is stale")


def run(args: argparse.Namespace) -> int:
    if args.config_command == "docs":
        text = render_docs()
        if args.check:
            current = args.output.read_text() if args.output.exists() else ""
            if current != text:
                print(f"{args.output} is stale: run `clusterplane config docs`", file=sys.stderr)
                return 1
            return 0
        args.output.write_text(text)
        return 0
    try:
        loaded = load_for(args)
    except ConfigError as exc:
        print(f"clusterplane: bad setting {exc}", file=sys.stderr)
        return 2
    print(render_show(loaded))
    return 0


def render_show(loaded: Loaded) -> str:
    rows = [
        (leaf.path, configuration.shown(leaf, configuration.value_at(loaded.settings, leaf.path)))
        for leaf in configuration.leaves()
    ]
    width = max(len(path) for path, _ in rows)
    value_width = min(max(len(value) for _, value in rows), 60)
    return "\n".join(
        f"{path:<{width}}  {value:<{value_width}}  {loaded.sources[path]}" for path, value in rows
    )


def _flag_of(path: str) -> str | None:
    return next((flag for flag, p, _ in SERVE_FLAGS + SWITCHES if p == path), None)


def _bounds(leaf: Leaf) -> str:
    meta = leaf.field.metadata
    parts = []
    if "choices" in meta:
        parts.append("one of " + ", ".join(f"`{c}`" for c in meta["choices"]))
    if "gt" in meta:
        parts.append(f"> {meta['gt']}")
    if "min" in meta:
        parts.append(f">= {meta['min']}")
    if "max" in meta:
        parts.append(f"<= {meta['max']}")
    if "at_most" in meta:
        parts.append(f"<= `{meta['at_most']}`")
    if "min_length" in meta:
        parts.append(f"{meta['min_length']}+ characters")
    if "form" in meta:
        parts.append(f"each `{meta['form_doc']}`")
    if meta.get("networks"):
        parts.append("CIDR networks")
    if meta.get("file"):
        parts.append("an existing file")
    return ", ".join(parts)


def _default(leaf: Leaf) -> str:
    if leaf.path == "database_url":
        return "`sqlite:///.clusterplane/clusterplane.db`"
    value = configuration.default_of(leaf)
    if value is None or value == ():
        return "unset"
    return f"`{configuration.shown(leaf, value)}`"


def _leaf_lines(leaf: Leaf, doc: str) -> list[str]:
    facts = [f"{configuration.type_name(leaf)}", f"default {_default(leaf)}"]
    if bounds := _bounds(leaf):
        facts.append(bounds)
    if leaf.secret:
        facts.append("secret (masked by `config show`)")
    ways = [f"env `{leaf.env_name}`"]
    if flag := _flag_of(leaf.path):
        ways.append(f"flag `{flag}`")
    return [
        f"- `{leaf.name}`: {'; '.join(facts)}. {'; '.join(ways)}.",
        *([f"  {doc}"] if doc else []),
    ]


def render_docs() -> str:
    """docs/configuration.md, from the settings tree and its comments."""
    out = [HEADER]
    for prefix, cls in configuration.sections():
        table = prefix.rstrip(".")
        out += ["", f"## {f'`[{table}]`' if table else 'Top level'}", ""]
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            out += [" ".join(cls.__doc__.split()), ""]
        docs = configuration.field_docs(cls)
        for leaf in configuration.leaves(cls, prefix):
            if leaf.path.count(".") == prefix.count("."):
                out += _leaf_lines(leaf, docs.get(leaf.name, ""))
    return "\n".join(out) + "\n"


HEADER = """\
# Configuration

<!-- Generated by `clusterplane config docs` (or `make docs`) from
src/clusterplane/settings.py; do not edit by hand. A test fails when it is stale. -->

Every setting of `clusterplane serve` comes, lowest precedence first, from its default,
the settings file (`clusterplane serve --config FILE`, TOML), an environment variable, and
a command-line flag. `clusterplane config show [--config FILE]` prints the effective
settings and where each came from (default, file, env or flag), with secrets masked.

- **File**: a setting `server.port` is key `port` of table `[server]`; top-level settings
  come before any table. Durations are seconds (numbers), lists are arrays of strings,
  paths are strings relative to the working directory. An optional setting is unset by
  leaving it out.
- **Environment**: `CLUSTERPLANE_` and the setting's path in capitals, with `__` for each
  dot: `CLUSTERPLANE_SERVER__PORT=8081`. Lists are comma-separated; an empty value unsets
  an optional setting; booleans are `true`/`false` (also `1`/`0`, `yes`/`no`). Two keys
  keep their older names: `CLUSTERPLANE_CREDENTIALS_KEY` and
  `CLUSTERPLANE_PREVIOUS_CREDENTIALS_KEYS`.
- **Validation**: a value of the wrong type, out of its range, an unknown key in the file
  or an unknown `CLUSTERPLANE_<TABLE>__<KEY>` variable stops the server at start (exit
  status 2) with the setting's path and the reason.

```toml
database_url = "postgresql+psycopg://clusterplane@db/clusterplane"

[server]
port = 8081
read_cache_seconds = 0.5

[health]
max_unhealthy_share = 0.25

[log]
format = "json"
```"""

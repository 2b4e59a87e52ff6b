"""How the user commands print: aligned tables and `key: value` blocks for people, JSON
for scripts (`--json`: the API's object as it came, indented, keys sorted).

Columns are (header, getter) pairs; a getter takes the row (a JSON object) and returns
text. A missing or null value prints as `-`. Wire enum prefixes (`CLUSTER_PHASE_`,
`REMEDIATION_MODE_`, ...) are dropped for people by `short`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]
PREFIXES = (
    "CLUSTER_PHASE_",
    "NODE_PHASE_",
    "REMEDIATION_MODE_",
    "REMEDIATION_TRIGGER_",
)


def text(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def short(value: object) -> str:
    """A wire enum value without its type prefix: `CLUSTER_PHASE_READY` -> `READY`."""
    raw = text(value)
    for prefix in PREFIXES:
        if raw.startswith(prefix):
            return raw[len(prefix) :]
    return raw


def field(name: str, shorten: bool = False) -> Callable[[Row], str]:
    """A getter of one field of a row."""
    return lambda row: short(row.get(name)) if shorten else text(row.get(name))


def table(rows: Iterable[Row], columns: Sequence[Column]) -> str:
    """Rows under upper-case headers, columns padded to their widest cell."""
    cells = [[get(row) for _, get in columns] for row in rows]
    headers = [name for name, _ in columns]
    widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def block(pairs: Sequence[tuple[str, object]]) -> str:
    """`label:  value` lines with the values aligned."""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(f"{label + ':':<{width}}  {text(value)}" for label, value in pairs)


def dumps(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def line(value: object) -> str:
    """One JSON document on one line (JSON Lines, for streamed events)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def emit(out: TextIO, content: str) -> None:
    out.write(content + "\n")
    out.flush()

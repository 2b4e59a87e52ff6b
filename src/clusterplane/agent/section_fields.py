"""Field readers the runtimes' section parsers share (`slurm.section`, `kubernetes.section`).

Each reads one value of an assignment's runtime section and returns it checked, or raises
`SectionError` naming the key: a malformed section changes nothing on the host.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any


class SectionError(ValueError):
    """The section is malformed; nothing was changed on the host."""


def string(raw: dict[str, Any], key: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise SectionError(f"{key} must be a string")
    return value


def match(
    raw: dict[str, Any], key: str, pattern: re.Pattern[str], default: str | None = None
) -> str:
    value = string(raw, key, default)
    if not pattern.match(value):
        raise SectionError(f"{key} is not valid: {value[:80]!r}")
    return value


def path(value: object, key: str, pattern: re.Pattern[str]) -> str:
    """A plain absolute path that `pattern` allows, without `..`, normalised."""
    if not isinstance(value, str) or not pattern.match(value) or ".." in value.split("/"):
        raise SectionError(f"{key} must be a plain absolute path")
    return str(PurePosixPath(value))

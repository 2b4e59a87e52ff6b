"""Builds the `Settings` tree from defaults, a TOML file, the environment and flags.

Precedence, lowest first: the dataclass default, the file (`clusterplane serve --config`),
a `CLUSTERPLANE_*` environment variable, a command-line flag. Everything here walks the
dataclass tree generically, so a field added to `settings.py` is at once reachable from
all three, validated, shown by `clusterplane config show` and documented.

* A setting's path is its dotted place in the tree (`server.read_cache_seconds`); its
  table in the file is the path's prefix (`[server]`, key `read_cache_seconds`).
* Its variable is ``CLUSTERPLANE_`` plus the path in capitals with ``__`` for each dot
  (`CLUSTERPLANE_SERVER__READ_CACHE_SECONDS`), except the older names in `ENV_ALIASES`.
  An empty variable unsets an optional setting; a list is comma-separated.
* A bad value (wrong type, out of the field's `metadata` bounds, unknown key) raises
  `ConfigError` naming the path, where the value came from and what is wrong.
"""

from __future__ import annotations

import ast
import inspect
import ipaddress
import math
import re
import textwrap
import tomllib
import types
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, fields, is_dataclass
from difflib import get_close_matches
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from clusterplane.settings import Settings

Source = Literal["default", "file", "env", "flag"]
ENV_PREFIX = "CLUSTERPLANE_"
ENV_ALIASES = {
    "credentials.key": "CLUSTERPLANE_CREDENTIALS_KEY",
    "credentials.previous_keys": "CLUSTERPLANE_PREVIOUS_CREDENTIALS_KEYS",
}
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A setting that cannot be used; `str()` is the line an operator sees."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Leaf:
    """One setting: a non-dataclass field somewhere in the tree."""

    path: str
    field: Field[Any]
    annotation: Any

    @property
    def name(self) -> str:
        return self.path.rsplit(".", 1)[-1]

    @property
    def env_name(self) -> str:
        return ENV_ALIASES.get(self.path) or ENV_PREFIX + self.path.upper().replace(".", "__")

    @property
    def secret(self) -> bool:
        return bool(self.field.metadata.get("secret", False))

    @property
    def optional(self) -> bool:
        return type(None) in _union_args(self.annotation)

    @property
    def base(self) -> Any:
        """The annotation without `| None`."""
        args = [a for a in _union_args(self.annotation) if a is not type(None)]
        return args[0] if args else self.annotation


def _union_args(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def sections(cls: type[Any] = Settings, prefix: str = "") -> Iterator[tuple[str, type[Any]]]:
    """Every dataclass of the tree with its path ("" for the root), parents first."""
    yield prefix, cls
    hints: dict[str, Any] = get_type_hints(cls)
    for f in fields(cls):
        if is_dataclass(hints[f.name]):
            yield from sections(hints[f.name], f"{prefix}{f.name}.")


def leaves(cls: type[Any] = Settings, prefix: str = "") -> Iterator[Leaf]:
    hints = get_type_hints(cls)
    for f in fields(cls):
        annotation: Any = hints[f.name]
        if isinstance(annotation, type) and is_dataclass(annotation):
            yield from leaves(annotation, f"{prefix}{f.name}.")
        else:
            yield Leaf(f"{prefix}{f.name}", f, annotation)


@cache
def leaf_index() -> dict[str, Leaf]:
    return {leaf.path: leaf for leaf in leaves()}


def default_of(leaf: Leaf) -> Any:
    if leaf.field.default is not MISSING:
        return leaf.field.default
    if leaf.field.default_factory is not MISSING:
        return leaf.field.default_factory()
    raise AssertionError(f"{leaf.path} has no default")


def _described(leaf: Leaf, value: object) -> str:
    return "the value" if leaf.secret else repr(value)


def _parse_text(leaf: Leaf, text: str) -> Any:
    """A value from an environment variable or a flag, into the leaf's type."""
    base = leaf.base
    text = text.strip()
    if leaf.optional and text == "":
        return None
    if base is bool:
        word = text.lower()
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        raise ConfigError(leaf.path, f"{_described(leaf, text)} is not true or false")
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(leaf.path, f"{_described(leaf, text)} is not an integer") from None
    if base is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(leaf.path, f"{_described(leaf, text)} is not a number") from None
    if get_origin(base) is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text


def _check_type(leaf: Leaf, value: Any) -> Any:
    """A value (from TOML or `_parse_text`) of the leaf's type, or a ConfigError."""
    base = leaf.base
    if value is None and leaf.optional:
        return None
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise ConfigError(leaf.path, "must be a finite number")
        value = float(value) if ok else value
    elif base is Path:
        ok = isinstance(value, str | Path) and str(value) != ""
        value = Path(value) if ok else value
    elif get_origin(base) is tuple:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(leaf.path, f"{_described(leaf, value)} is not {type_name(leaf)}")
    return value


def _check_bounds(leaf: Leaf, value: Any) -> None:
    meta = leaf.field.metadata
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(leaf.path, f"must be one of {', '.join(meta['choices'])}")
    if "gt" in meta and not value > meta["gt"]:
        raise ConfigError(leaf.path, f"must be greater than {meta['gt']}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(leaf.path, f"must be at least {meta['min']}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(leaf.path, f"must be at most {meta['max']}")
    if "min_length" in meta and len(value) < meta["min_length"]:
        raise ConfigError(leaf.path, f"must be at least {meta['min_length']} characters")
    if "form" in meta:
        for item in value if isinstance(value, tuple) else (value,):
            if not re.fullmatch(meta["form"], str(item)):
                shown = "a value" if leaf.secret else repr(item)
                raise ConfigError(leaf.path, f"{shown} is not of the form {meta['form_doc']}")
    if meta.get("file") and not Path(value).is_file():
        raise ConfigError(leaf.path, f"{value} is not a readable file")
    if meta.get("networks"):
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ConfigError(leaf.path, f"{text!r} is not a CIDR network") from None


def coerce(leaf: Leaf, value: Any, *, textual: bool) -> Any:
    """`value` as the leaf's type, checked against its bounds; `textual`: from env/flags."""
    typed = _check_type(leaf, _parse_text(leaf, value) if textual else value)
    _check_bounds(leaf, typed)
    return typed


def type_name(leaf: Leaf) -> str:
    base = leaf.base
    if get_origin(base) is tuple:
        name = "a list of strings"
    else:
        name = {
            bool: "true or false",
            int: "an integer",
            float: "a number",
            Path: "a file path",
        }.get(base, "a string")
    return f"{name} or unset" if leaf.optional else name


def read_file(path: Path) -> dict[str, Any]:
    """The file's settings by path; unknown keys and tables in the wrong place fail."""
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(str(path), exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    found: dict[str, Any] = {}
    _flatten(document, "", found)
    return found


def _flatten(table: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    tables = {path for path, _ in sections() if path}
    index = leaf_index()
    for key, value in table.items():
        path = f"{prefix}{key}"
        if f"{path}." in tables:
            if not isinstance(value, dict):
                raise ConfigError(path, f"must be a table ([{path}]), not a value")
            _flatten(value, f"{path}.", out)
        elif path in index:
            out[path] = value
        else:
            known = sorted(index) + sorted(t.rstrip(".") for t in tables)
            close = get_close_matches(path, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(path, f"unknown setting{hint}")


def read_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings the environment sets, by path. A `CLUSTERPLANE_A__B` name that is no
    setting fails (a mistyped name must not be ignored); other CLUSTERPLANE_ names that
    are not settings belong to other tools and are left alone."""
    by_name = {leaf.env_name: leaf.path for leaf in leaves()}
    found = {by_name[name]: value for name, value in environ.items() if name in by_name}
    for name in environ:
        if name.startswith(ENV_PREFIX) and "__" in name and name not in by_name:
            close = get_close_matches(name, list(by_name), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(name, f"no such setting{hint} (from the environment)")
    return found


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    sources: dict[str, Source]


def load(
    file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Loaded:
    """Effective settings and where each came from; `flags` maps paths to flag text."""
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    index = leaf_index()
    layers: list[tuple[Source, Mapping[str, Any], bool, str]] = [
        ("file", read_file(file) if file is not None else {}, False, f"in {file}"),
        ("env", read_env(environ or {}), True, "from the environment"),
        ("flag", flags or {}, True, "from the command line"),
    ]
    for source, found, textual, where in layers:
        for path, raw in found.items():
            leaf = index[path]
            try:
                values[path] = coerce(leaf, raw, textual=textual)
            except ConfigError as exc:
                name = leaf.env_name if source == "env" else path
                raise ConfigError(name, f"{exc.reason} ({where})") from None
            sources[path] = source
    for path in index:
        sources.setdefault(path, "default")
    settings = build(values)
    _check_siblings(settings, sources)
    return Loaded(settings, sources)


def _check_siblings(settings: Settings, sources: Mapping[str, Source]) -> None:
    """`at_most` bounds: a field may not exceed the sibling field it names."""
    for leaf in leaves():
        sibling = leaf.field.metadata.get("at_most")
        if sibling is None:
            continue
        other = leaf.path.rpartition(".")[0] + ("." if "." in leaf.path else "") + sibling
        value, limit = value_at(settings, leaf.path), value_at(settings, other)
        if value > limit:
            raise ConfigError(
                leaf.path, f"{value} is more than {other} ({limit}, {sources[other]})"
            )


def build(values: Mapping[str, Any], cls: type[Any] = Settings, prefix: str = "") -> Any:
    """A `cls` with the given leaf values (by path) and defaults elsewhere."""
    hints: dict[str, Any] = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        path = f"{prefix}{f.name}"
        if is_dataclass(hints[f.name]):
            kwargs[f.name] = build(values, hints[f.name], f"{path}.")
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


def value_at(settings: Any, path: str) -> Any:
    for part in path.split("."):
        settings = getattr(settings, part)
    return settings


def shown(leaf: Leaf, value: Any) -> str:
    """A value as `config show` prints it (TOML-like), secrets masked."""
    if value is None or value == ():
        return "(unset)"
    if leaf.secret:
        return "********"
    if isinstance(value, str) and leaf.name.endswith("url"):
        value = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:********@", value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str | Path):
        return f'"{value}"'
    return repr(value)


def field_docs(cls: type[Any]) -> dict[str, str]:
    """Each field's comment: the `#` block just above it, or the comment on its line."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    docs: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        comment: list[str] = []
        row = node.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#"):
            comment.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        trailing = lines[node.lineno - 1].partition("  # ")[2]
        docs[node.target.id] = " ".join(comment + ([trailing.strip()] if trailing else []))
    return docs

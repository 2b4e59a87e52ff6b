"""Log records that carry request, project, cluster and node ids; text or JSON lines.

`LogContext` holds the ids known for the work in hand. The API's request-id middleware
opens one per request (`scope`) and the routing and authentication layers fill it in
(`annotate`): the object is shared, not copied, so ids learnt deep in a handler reach
the access-log line the middleware writes at the end. `ContextFilter` copies the ids onto
every record; `configure` installs it with a text or JSON formatter on the root logger.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

ID_FIELDS = ("request_id", "project_id", "api_key_id", "cluster_id", "node_id")
# Extra record attributes a JSON line carries when a record has them (the access log's).
EXTRA_FIELDS = ("method", "path", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class LogContext:
    request_id: str | None = None
    project_id: str | None = None
    api_key_id: str | None = None
    cluster_id: str | None = None
    node_id: str | None = None

    def ids(self) -> dict[str, str]:
        return {name: value for name, value in asdict(self).items() if value is not None}


_current: ContextVar[LogContext | None] = ContextVar("clusterplane_log_context", default=None)


def current() -> LogContext | None:
    return _current.get()


@contextmanager
def scope(**ids: str | None) -> Iterator[LogContext]:
    """A fresh context for one unit of work (a request, a controller's row)."""
    context = LogContext(**ids)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def annotate(**ids: str | None) -> None:
    """Fill in ids the current context does not know yet (none open: nothing to do)."""
    context = _current.get()
    if context is None:
        return
    for name, value in ids.items():
        if value is not None and getattr(context, name) is None:
            setattr(context, name, value)


class ContextFilter(logging.Filter):
    """Gives every record the current ids (None where unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        for name in ID_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, getattr(context, name) if context else None)
        return True


class TextFormatter(logging.Formatter):
    """One readable line; known ids follow in brackets."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(
            f"{name}={getattr(record, name)}"
            for name in ID_FIELDS
            if getattr(record, name, None) is not None
        )
        if not ids:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{ids}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the known ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS + EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, log_format: str) -> None:
    """Route every logger (uvicorn's too, which must not configure its own) to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())

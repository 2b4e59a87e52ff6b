"""A send timeout for uvicorn's HTTP/1.1 connections: a client that takes no bytes of a
response for `seconds` is disconnected.

uvicorn has none: a client that asks and never reads keeps its connection, the response's
buffers and the request's task (and whatever they hold) forever. The transport tells the
protocol when its write buffer passes the high-water mark (`pause_writing`) and when it
drained again (`resume_writing`); a timer started on the first is cancelled by the second,
and when it fires the transport is aborted, which uvicorn sees as a client that went away
(the request's task is cancelled, its slot in `api.inflight` given back). A slow client
that keeps draining its buffer keeps resetting the timer.

Both of uvicorn's HTTP/1.1 protocols get it the same way (`with_send_timeout`):
httptools' when that parser is installed (the `uvicorn[standard]` extra; it serves more
requests per CPU-second, docs/profiles.md), else h11's. Used by `clusterplane serve`
(cli/main.py) and the benchmarks' server as uvicorn's `http` protocol class.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any

log = logging.getLogger(__name__)


class _SendTimeout(asyncio.Protocol):
    """Put before a uvicorn protocol class in the bases; `seconds` is set per subclass."""

    seconds: float
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: Any
    _stalled: asyncio.TimerHandle | None = None  # set while the client takes nothing

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.seconds, self._abort_stalled)

    def resume_writing(self) -> None:
        self._cancel_timer()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def _cancel_timer(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _abort_stalled(self) -> None:
        self._stalled = None
        log.info("client %s read nothing for %s s: disconnected", self.client, self.seconds)
        self.transport.abort()


def uvicorn_protocol(name: str) -> type[asyncio.Protocol]:
    """uvicorn's protocol class `name` ("httptools" or "h11"); "auto": httptools where
    its parser is installed, else h11 (as uvicorn's own "auto")."""
    if name == "auto":
        name = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if name == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return H11Protocol


def with_send_timeout(seconds: float, protocol: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol `protocol`, disconnecting clients stalled for `seconds`."""
    base = uvicorn_protocol(protocol)
    return type(f"SendTimeout{base.__name__}", (_SendTimeout, base), {"seconds": seconds})

"""A send timeout for uvicorn's HTTP/1.1 (h11) connections: a client that takes no bytes
of a response for `seconds` is disconnected.

uvicorn has none: a client that asks and never reads keeps its connection, the response's
buffers and the request's task (and whatever they hold) forever. The transport tells the
protocol when its write buffer passes the high-water mark (`pause_writing`) and when it
drained again (`resume_writing`); a timer started on the first is cancelled by the second,
and when it fires the transport is aborted, which uvicorn sees as a client that went away
(the request's task is cancelled, its slot in `api.inflight` given back). A slow client
that keeps draining its buffer keeps resetting the timer.

Used by `clusterplane serve` (cli/main.py) as uvicorn's `http` protocol class.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)


def h11_with_send_timeout(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, disconnecting clients stalled for `seconds`."""

    class SendTimeoutH11Protocol(H11Protocol):
        _stalled: asyncio.TimerHandle | None = None  # set while the client takes nothing

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stalled is None:
                self._stalled = self.loop.call_later(seconds, self._abort_stalled)

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
            log.info("client %s read nothing for %s s: disconnected", self.client, seconds)
            self.transport.abort()

    return SendTimeoutH11Protocol

"""Request metrics: a count by route, method and status, and a latency histogram.

`RequestMetrics` is a plain ASGI middleware (no `BaseHTTPMiddleware`, which copies
streamed bodies). A request is labelled by the template of the route that answered it
(`/v1/compute/clusters/{cluster_id}`), from `scope["route"]` once the router has matched
it, never by its raw path: a client sending random ids or paths cannot grow the
number of series. Paths no route matches share the label `unmatched`, and methods outside
the HTTP set share `other`. The latency runs from the request's arrival to the return of
the app's call (the response's last byte sent); an exception that escapes counts as 500.
The children of the series are bound once per label set, so a request costs two clock
reads, a few string operations, a dict lookup and two updates (docs/metrics.md has its
measured cost).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clusterplane.metrics import Metrics

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # A plain count (only the event loop's thread changes it), read at scrape time:
        # a locked gauge's inc and dec cost more than the rest of the middleware.
        self.in_flight = 0
        metrics.requests_in_flight.set_function(lambda: self.in_flight)
        # (route, method, status) -> bound children; bounded by routes x methods x codes.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.in_flight -= 1
            count, seconds = self._bound(scope, status)
            count.inc()
            seconds.observe(time.perf_counter() - started)

    def _bound(self, scope: Scope, status: int) -> tuple[Counter, Histogram]:
        route = _template(scope)
        method = scope["method"] if scope["method"] in METHODS else "other"
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(route, method, str(status)),
                self.metrics.request_seconds.labels(route, method),
            )
            self._children[key] = children
        return children


class LabelledRoute(Route):
    """A plain Starlette route that names itself in the scope (`scope["route"]`), as the
    API's routes do, so its requests are labelled by its template, not `unmatched`."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def _template(scope: Scope) -> str:
    """The matched route's template, with the literal prefix it was included under.

    A route included under a prefix (`/v1`) may name only its own part of the path
    (`/compute/clusters/{cluster_id}`); the segments the path has beyond it are that
    prefix, literal text of ours, since only a path the route matched gets here.
    """
    template = getattr(scope.get("route"), "path_format", None)
    if not isinstance(template, str):
        return UNMATCHED
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    extra = path.count("/") - template.count("/")
    if extra <= 0:
        return template
    cut = 0
    for _ in range(extra):
        cut = path.index("/", cut + 1)
    return path[:cut] + template

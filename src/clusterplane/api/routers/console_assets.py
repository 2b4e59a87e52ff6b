"""`GET /` (the console's page) and `GET /console/static/{name}` (its scripts and style).

Only the files shipped in `clusterplane/console/static` are served, by exact name (read
once, kept in memory); anything else is a 404 in the spec's envelope. Every answer forbids
inline script, foreign origins and framing (`SECURITY_HEADERS`): the page's code comes
from this server only and talks to this server only. No key is needed to fetch the page;
it asks for one.
"""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter
from fastapi.responses import Response

from clusterplane.console import STATIC
from clusterplane.errors import NotFound

router = APIRouter(include_in_schema=False)

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def assets() -> dict[str, tuple[bytes, str]]:
    """Each shipped file by name: its bytes and media type."""
    return {
        path.name: (path.read_bytes(), MEDIA_TYPES[path.suffix])
        for path in sorted(STATIC.iterdir())
        if path.is_file() and path.suffix in MEDIA_TYPES
    }


def _serve(name: str) -> Response:
    found = assets().get(name)
    if found is None:
        raise NotFound(f"console file '{name}' not found", param="name")
    body, media_type = found
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@router.get("/")
def index() -> Response:
    return _serve("index.html")


@router.get("/console/static/{name}")
def static(name: str) -> Response:
    return _serve(name)

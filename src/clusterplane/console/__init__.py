"""The web console: plain ES modules, one style sheet and one page, shipped as package
data in `static/` and served by `api/routers/console_assets.py` at `/` (no build step).

The page signs in with an API key (kept in the tab's sessionStorage, sent only in the
`Authorization` header), reads everything through the HTTP API and follows
`GET /console/v1/stream` for live updates. See docs/console.md.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"

"""The OpenAPI document: request bodies of the hand-parsed routes, and who may read it.

Routes read their bodies themselves (`deps.raw_body`, for size limits and fingerprints),
so FastAPI cannot see the models; `request_body(Model)` declares them on the route and
`install` adds the JSON schema of every such model the document uses to its components.

`GET /openapi.json` (and the `/docs` page built on it) describes the public API to anyone;
with an admin key it describes everything, the operator's `/admin/...` API included. An
unknown key is a 401.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from clusterplane.api.deps import current_caller
from clusterplane.api.schemas import ErrorEnvelope

REF = "#/components/schemas/{model}"
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": text}
    for status, text in (
        (400, "invalid request, or the object's state forbids it"),
        (401, "missing or unknown API key"),
        (403, "not allowed for this key"),
        (404, "unknown or invisible object"),
        (405, "method not allowed"),
        (409, "conflict, or capacity unavailable (x-should-retry: false)"),
        (413, "request body too large"),
    )
}
_models: dict[str, type[BaseModel]] = {}


def request_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body is `model`."""
    _models[model.__name__] = model
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}},
        }
    }


ADMIN_PREFIX = "/admin/"


def build_document(app: FastAPI, *, admin: bool) -> dict[str, Any]:
    """The document of every route (`admin`), or of the public ones only: then without
    the `/admin/...` paths and the schemas only they use."""
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _models.items():
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    if not admin:
        paths = document.get("paths", {})
        document["paths"] = {p: v for p, v in paths.items() if not p.startswith(ADMIN_PREFIX)}
        document["components"]["schemas"] = _reachable(document["paths"], schemas)
    return document


_REF = re.compile(r'"#/components/schemas/([^"]+)"')


def _reachable(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The schemas `paths` refer to, directly or through other schemas."""
    todo = set(_REF.findall(orjson.dumps(paths).decode()))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        todo |= set(_REF.findall(orjson.dumps(schemas[name]).decode()))
    return {name: schema for name, schema in schemas.items() if name in seen}


def install(app: FastAPI) -> None:
    """Serve `/openapi.json` (public, or whole for admin keys) and `/docs`."""
    cache: dict[bool, bytes] = {}

    def encoded(admin: bool) -> bytes:
        if admin not in cache:
            cache[admin] = orjson.dumps(build_document(app, admin=admin))
        return cache[admin]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> Response:
        admin = False
        if "authorization" in request.headers:
            admin = (await current_caller(request)).is_admin
        return Response(encoded(admin), media_type="application/json")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API")

    app.openapi = lambda: build_document(app, admin=True)  # type: ignore[method-assign]

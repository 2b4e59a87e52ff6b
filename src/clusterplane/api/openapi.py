"""The OpenAPI document: request bodies of the hand-parsed routes, and their schemas.

Routes read their bodies themselves (`deps.raw_body`, for size limits and fingerprints),
so FastAPI cannot see the models; `request_body(Model)` declares them on the route and `install`
adds every such model's JSON schema to the document's components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

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


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _models.items():
            schema = model.model_json_schema(ref_template=REF, mode="validation")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]

"""Tenants for tests that need more than the admin's project: a project and a member's key,
made through the admin API like an operator would."""

from __future__ import annotations

from typing import Any

from tests.support.engine import Engine


def _admin_post(engine: Engine, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = engine.client.post(f"/admin/v1/{path}", json=body, headers=engine.headers())
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def new_tenant(engine: Engine, name: str) -> tuple[str, str]:
    """A new project with one member and that member's API key: (project id, key)."""
    user = _admin_post(engine, "users", {"name": name})["id"]
    project = _admin_post(engine, "projects", {"name": name, "slug": name})["id"]
    key = _admin_post(engine, "api-keys", {"user_id": user, "project_id": project})["api_key"]
    return project, key

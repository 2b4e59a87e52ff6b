"""Operator use cases for tenancy: organisations, projects, users, memberships and keys
(issue, list, revoke).

Only admin callers reach these (the admin API checks); each returns plain rows.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import ApiKeyRow, MembershipRow, OrganizationRow, ProjectRow, UserRow
from clusterplane.errors import Conflict, InvalidRequest, NotFound
from clusterplane.services.access.auth import IssuedKey, issue_key
from clusterplane.services.access.ids import new_prefixed

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,127}$")


def _check_name(value: str, param: str) -> None:
    if not NAME.match(value):
        raise InvalidRequest(f"{param}: 1-128 letters, digits, spaces or ._@-", param=param)


def create_organization(session: Session, *, name: str, now: datetime) -> OrganizationRow:
    _check_name(name, "name")
    row = OrganizationRow(id=new_prefixed("org"), name=name, created_at=now)
    session.add(row)
    return row


def create_project(
    session: Session, *, organization_id: str, name: str, slug: str, now: datetime
) -> ProjectRow:
    _check_name(name, "name")
    if not SLUG.match(slug):
        raise InvalidRequest("slug: lowercase letters, digits and '-', 1-63 chars", param="slug")
    if session.get(OrganizationRow, organization_id) is None:
        raise NotFound(f"organization '{organization_id}' not found", param="organization_id")
    if session.scalar(select(ProjectRow).where(ProjectRow.slug == slug)) is not None:
        raise Conflict(f"a project with slug '{slug}' already exists", param="slug")
    row = ProjectRow(
        id=new_prefixed("proj"),
        organization_id=organization_id,
        name=name,
        slug=slug,
        created_at=now,
    )
    session.add(row)
    return row


def create_user(session: Session, *, name: str, now: datetime) -> UserRow:
    _check_name(name, "name")
    if session.scalar(select(UserRow).where(UserRow.name == name)) is not None:
        raise Conflict(f"a user named '{name}' already exists", param="name")
    row = UserRow(id=new_prefixed("user"), name=name, created_at=now)
    session.add(row)
    return row


def add_member(session: Session, *, user_id: str, project_id: str, role: str = "member") -> None:
    if session.get(UserRow, user_id) is None:
        raise NotFound(f"user '{user_id}' not found", param="user_id")
    if session.get(ProjectRow, project_id) is None:
        raise NotFound(f"project '{project_id}' not found", param="project_id")
    if session.get(MembershipRow, (user_id, project_id)) is None:
        session.add(MembershipRow(user_id=user_id, project_id=project_id, role=role))


def create_api_key(
    session: Session,
    *,
    user_id: str,
    project_id: str,
    now: datetime,
    name: str = "",
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A key for `user_id` whose default project is `project_id` (they must be a member);
    `now` and `expires_at` are wall-clock times."""
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("a key must expire in the future", param="expires_in_seconds")
    add_member(session, user_id=user_id, project_id=project_id)
    session.flush()
    return issue_key(
        session, user_id=user_id, project_id=project_id, now=now, name=name, expires_at=expires_at
    )


def list_api_keys(
    session: Session, *, user_id: str | None = None, project_id: str | None = None
) -> list[ApiKeyRow]:
    """Keys (revoked and expired ones too), oldest first; callers show no hash material."""
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    if user_id is not None:
        query = query.where(ApiKeyRow.user_id == user_id)
    if project_id is not None:
        query = query.where(ApiKeyRow.project_id == project_id)
    return list(session.scalars(query))


def revoke_api_key(session: Session, key_id: str, *, now: datetime) -> ApiKeyRow:
    """Revoke a key at wall time `now` (revoking twice keeps the first time)."""
    row = session.get(ApiKeyRow, key_id)
    if row is None:
        raise NotFound(f"API key '{key_id}' not found", param="key_id")
    if row.revoked_at is None:
        row.revoked_at = now
    return row


def list_projects(session: Session) -> list[ProjectRow]:
    return list(session.scalars(select(ProjectRow).order_by(ProjectRow.created_at)))

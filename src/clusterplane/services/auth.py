"""Tenancy and API keys: who is calling, which projects they belong to, bootstrap admin.

An API key looks like `cp_<key id>_<secret>`; only the SHA-256 of the secret is stored, and
the comparison is constant-time. `Caller` is what every other use case receives: the key's
own project is the default scope, membership decides what else is visible.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clusterplane.db.rows import (
    ApiKeyRow,
    MembershipRow,
    OrganizationRow,
    ProjectRow,
    UserRow,
)
from clusterplane.errors import InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from clusterplane.services.ids import new_prefixed

MIN_CUSTOM_KEY = 24
KEY_PATTERN = re.compile(r"^cp_(key_[0-9a-f]{16})_([A-Za-z0-9_-]{20,128})$")
DEFAULT_ORG_ID = "org_default"
DEFAULT_PROJECT_ID = "proj_default"
ADMIN_USER = "admin"


@dataclass(frozen=True)
class Caller:
    api_key_id: str
    user_id: str
    user_name: str
    project_id: str
    organization_id: str
    is_admin: bool
    member_project_ids: frozenset[str]

    def can_see(self, project_id: str) -> bool:
        return project_id in self.member_project_ids


@dataclass(frozen=True)
class IssuedKey:
    api_key_id: str
    secret: str  # the whole key as the client sends it; shown once, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def authenticate(session: Session, token: str | None) -> Caller:
    if not token:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    key_id, secret = split_key(token.strip())
    row = session.get(ApiKeyRow, key_id) if key_id else None
    if (
        row is None
        or row.revoked_at is not None
        or not hmac.compare_digest(row.secret_sha256, _hash(secret))
    ):
        raise Unauthenticated("invalid API key")
    user = session.get(UserRow, row.user_id)
    project = session.get(ProjectRow, row.project_id)
    assert user is not None and project is not None
    members = session.scalars(
        select(MembershipRow.project_id).where(MembershipRow.user_id == row.user_id)
    ).all()
    return Caller(
        api_key_id=row.id,
        user_id=user.id,
        user_name=user.name,
        project_id=project.id,
        organization_id=project.organization_id,
        is_admin=row.is_admin,
        member_project_ids=frozenset(members) | {project.id},
    )


def split_key(token: str) -> tuple[str | None, str]:
    """(key id, secret) of a presented key.

    Keys this server issues carry their id (`cp_key_<hex>_<secret>`). An operator-chosen
    key (CLUSTERPLANE_ADMIN_API_KEY in any other form, 24+ printable characters) is looked
    up by an id derived from its hash.
    """
    match = KEY_PATTERN.match(token)
    if match is not None:
        return match.group(1), match.group(2)
    if len(token) < MIN_CUSTOM_KEY or len(token) > 512 or not token.isprintable() or " " in token:
        return None, token
    return "key_" + _hash(token)[:16], token


def require_admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise PermissionDenied("this operation needs an admin API key")


def resolve_project(caller: Caller, project_id: str | None) -> str:
    """The project a write goes to: the caller's own, or one they are a member of."""
    if project_id is None:
        return caller.project_id
    if not caller.can_see(project_id):
        raise NotFound(f"project '{project_id}' not found", param="project_id")
    return project_id


def issue_key(
    session: Session,
    *,
    user_id: str,
    project_id: str,
    now: datetime,
    is_admin: bool = False,
    secret: str | None = None,
    name: str = "",
) -> IssuedKey:
    if secret is not None:
        chosen_id, secret_part = split_key(secret)
        if chosen_id is None:
            raise InvalidRequest(
                f"an API key must be at least {MIN_CUSTOM_KEY} printable characters without spaces"
            )
        key_id = chosen_id
        whole = secret
    else:
        key_id = new_prefixed("key")
        secret_part = secrets.token_urlsafe(32)
        whole = f"cp_{key_id}_{secret_part}"
    session.add(
        ApiKeyRow(
            id=key_id,
            secret_sha256=_hash(secret_part),
            user_id=user_id,
            project_id=project_id,
            name=name,
            is_admin=is_admin,
            created_at=now,
            revoked_at=None,
        )
    )
    return IssuedKey(api_key_id=key_id, secret=whole)


def ensure_default_tenancy(session: Session, now: datetime) -> None:
    """The default organisation, project and admin user exist (idempotent)."""
    if session.get(OrganizationRow, DEFAULT_ORG_ID) is None:
        session.add(OrganizationRow(id=DEFAULT_ORG_ID, name="Default", created_at=now))
        session.flush()
    if session.get(ProjectRow, DEFAULT_PROJECT_ID) is None:
        session.add(
            ProjectRow(
                id=DEFAULT_PROJECT_ID,
                organization_id=DEFAULT_ORG_ID,
                name="Default",
                slug="default",
                created_at=now,
            )
        )
        session.flush()
    admin = session.scalar(select(UserRow).where(UserRow.name == ADMIN_USER))
    if admin is None:
        admin = UserRow(id=new_prefixed("user"), name=ADMIN_USER, created_at=now)
        session.add(admin)
        session.flush()
        session.add(MembershipRow(user_id=admin.id, project_id=DEFAULT_PROJECT_ID, role="owner"))


def bootstrap_admin_key(session: Session, *, now: datetime, key: str | None) -> IssuedKey | None:
    """Ensure an admin key exists; returns a newly issued key (to print once) or None.

    With `key` given (CLUSTERPLANE_ADMIN_API_KEY), that exact key is registered if missing.
    Without it, a key is generated only when no admin key exists yet.
    """
    ensure_default_tenancy(session, now)
    admin = session.scalar(select(UserRow).where(UserRow.name == ADMIN_USER))
    assert admin is not None
    if key is not None:
        key_id, _ = split_key(key)
        if key_id is None:
            raise InvalidRequest(
                f"CLUSTERPLANE_ADMIN_API_KEY must be at least {MIN_CUSTOM_KEY} printable "
                "characters without spaces (or a key from `clusterplane generate-key`)"
            )
        if session.get(ApiKeyRow, key_id) is not None:
            return None
        return issue_key(
            session,
            user_id=admin.id,
            project_id=DEFAULT_PROJECT_ID,
            now=now,
            is_admin=True,
            secret=key,
            name="bootstrap",
        )
    existing = session.scalar(select(ApiKeyRow).where(ApiKeyRow.is_admin.is_(True)).limit(1))
    if existing is not None:
        return None
    return issue_key(
        session,
        user_id=admin.id,
        project_id=DEFAULT_PROJECT_ID,
        now=now,
        is_admin=True,
        name="bootstrap",
    )


def generate_key_text() -> str:
    """A fresh key in the accepted format, for scripts that want to pick their own."""
    return f"cp_key_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"

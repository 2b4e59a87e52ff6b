"""Tenancy and API keys: who is calling, which projects they belong to, bootstrap admin.

An API key the server issues looks like `cp_<key id>_<secret>` and is found by its id. An
operator-chosen key (CLUSTERPLANE_ADMIN_API_KEY in any other form) is found by `lookup`, an
HMAC of the key under a secret derived from the credentials key (`SecretBox.lookup_keys`),
so the database alone never lets anyone test a guess. Each row keeps only a salted hash of
the SHA-256 of the secret (`secret_hash`: HMAC-SHA256 with a per-key salt for issued keys,
whose secrets are random; scrypt for chosen ones), compared in constant time. Ids are
random, so nothing shown to a caller is hash material.

A key stops working when revoked or past `expires_at` (wall-clock time). `Caller` is what
every other use case receives: the key's own project is the default scope, membership
decides what else is visible.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import (
    ApiKeyRow,
    MembershipRow,
    OrganizationRow,
    ProjectRow,
    UserRow,
)
from clusterplane.errors import InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from clusterplane.services.access.ids import new_prefixed

MIN_CUSTOM_KEY = 24
KEY_PATTERN = re.compile(r"^cp_(key_[0-9a-f]{16})_([A-Za-z0-9_-]{20,128})$")
DEFAULT_ORG_ID = "org_default"
DEFAULT_PROJECT_ID = "proj_default"
ADMIN_USER = "admin"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# A chosen key migrated from before keyed lookups, until the server next sees it.
LEGACY_LOOKUP = "sha256:"


@dataclass(frozen=True)
class Caller:
    api_key_id: str
    user_id: str
    user_name: str
    project_id: str
    organization_id: str
    is_admin: bool
    member_project_ids: frozenset[str]
    expires_at: datetime | None = None
    # The key was found by an old lookup (a previous credentials key, or the migrated
    # hash prefix): `refresh_lookup` rewrites it.
    lookup_stale: bool = False

    def can_see(self, project_id: str) -> bool:
        return project_id in self.member_project_ids

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class IssuedKey:
    api_key_id: str
    secret: str  # the whole key as the client sends it; shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_secret(secret: str, *, chosen: bool) -> str:
    """The stored form of a key's secret: a salted hash of its SHA-256, naming its scheme."""
    salt = os.urandom(16)
    digest = _digest(secret).encode()
    if chosen:
        value = hashlib.scrypt(digest, salt=salt, dklen=32, **SCRYPT)
        return f"scrypt${salt.hex()}${value.hex()}"
    return f"hmac-sha256${salt.hex()}${hmac.new(salt, digest, hashlib.sha256).hexdigest()}"


def secret_matches(stored: str, secret: str) -> bool:
    scheme, _, rest = stored.partition("$")
    salt_hex, _, expected = rest.partition("$")
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    digest = _digest(secret).encode()
    if scheme == "scrypt":
        actual = hashlib.scrypt(digest, salt=salt, dklen=32, **SCRYPT).hex()
    elif scheme == "hmac-sha256":
        actual = hmac.new(salt, digest, hashlib.sha256).hexdigest()
    else:
        return False
    return hmac.compare_digest(actual, expected)


def key_lookup(token: str, lookup_key: bytes) -> str:
    """The keyed hash an operator-chosen key is found by."""
    return hmac.new(lookup_key, token.encode(), hashlib.sha256).hexdigest()[:32]


def _find(
    session: Session, token: str, lookup_keys: Sequence[bytes]
) -> tuple[ApiKeyRow | None, str]:
    """The row a presented key names (not yet verified) and the secret to check."""
    match = KEY_PATTERN.match(token)
    if match is not None:
        return session.get(ApiKeyRow, match.group(1)), match.group(2)
    if not _acceptable_custom(token):
        return None, token
    lookups = [key_lookup(token, k) for k in lookup_keys]
    row = session.scalar(
        select(ApiKeyRow).where(
            or_(ApiKeyRow.lookup.in_(lookups), ApiKeyRow.lookup == _legacy_lookup(token))
        )
    )
    return row, token


def _legacy_lookup(token: str) -> str:
    return LEGACY_LOOKUP + _digest(token)[:16]


def _acceptable_custom(token: str) -> bool:
    return MIN_CUSTOM_KEY <= len(token) <= 512 and token.isprintable() and " " not in token


def authenticate(
    session: Session, token: str | None, *, lookup_keys: Sequence[bytes], now: datetime
) -> Caller:
    """The caller a key belongs to; `now` is wall-clock time (key expiry)."""
    if not token:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    row, secret = _find(session, token.strip(), lookup_keys)
    if row is None or row.revoked_at is not None or not secret_matches(row.secret_hash, secret):
        raise Unauthenticated("invalid API key")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthenticated("this API key has expired")
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
        expires_at=row.expires_at,
        lookup_stale=row.lookup is not None
        and row.lookup != key_lookup(token.strip(), lookup_keys[0]),
    )


def refresh_lookup(session: Session, key_id: str, token: str, lookup_key: bytes) -> None:
    """Rewrite a chosen key's lookup under the current lookup key (it was just verified)."""
    row = session.get(ApiKeyRow, key_id)
    if row is not None and row.lookup is not None:
        row.lookup = key_lookup(token.strip(), lookup_key)


def split_key(token: str) -> tuple[str | None, str]:
    """(key id, secret) of a key the server issued; (None, token) for any other."""
    match = KEY_PATTERN.match(token)
    if match is not None:
        return match.group(1), match.group(2)
    return None, token


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
    lookup_key: bytes | None = None,
    is_admin: bool = False,
    secret: str | None = None,
    name: str = "",
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new key (or the operator's chosen `secret`); only its salted hash is stored."""
    lookup: str | None = None
    if secret is not None:
        key_id, secret_part = split_key(secret)
        if key_id is None:
            if not _acceptable_custom(secret):
                raise InvalidRequest(
                    f"an API key must be at least {MIN_CUSTOM_KEY} printable characters "
                    "without spaces"
                )
            if lookup_key is None:
                raise ValueError("a chosen key needs the server's lookup key")
            key_id, lookup = new_prefixed("key"), key_lookup(secret, lookup_key)
        whole = secret
    else:
        key_id = new_prefixed("key")
        secret_part = secrets.token_urlsafe(32)
        whole = f"cp_{key_id}_{secret_part}"
    session.add(
        ApiKeyRow(
            id=key_id,
            secret_hash=hash_secret(secret_part, chosen=lookup is not None),
            lookup=lookup,
            user_id=user_id,
            project_id=project_id,
            name=name,
            is_admin=is_admin,
            created_at=now,
            revoked_at=None,
            expires_at=expires_at,
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


def bootstrap_admin_key(
    session: Session, *, now: datetime, key: str | None, lookup_keys: Sequence[bytes]
) -> IssuedKey | None:
    """Ensure an admin key exists; returns a key the server generated (to print once) or None.

    With `key` given (CLUSTERPLANE_ADMIN_API_KEY), that exact key is registered if missing
    (a revoked one stays revoked), and its lookup moved to the current lookup key. Without
    it, a key is generated only when no unrevoked admin key exists. `now` is wall time.
    """
    ensure_default_tenancy(session, now)
    admin = session.scalar(select(UserRow).where(UserRow.name == ADMIN_USER))
    assert admin is not None
    if key is not None:
        if KEY_PATTERN.match(key) is None and not _acceptable_custom(key):
            raise InvalidRequest(
                f"CLUSTERPLANE_ADMIN_API_KEY must be at least {MIN_CUSTOM_KEY} printable "
                "characters without spaces (or a key from `clusterplane generate-key`)"
            )
        existing, secret = _find(session, key, lookup_keys)
        if existing is not None:
            if not secret_matches(existing.secret_hash, secret):
                raise InvalidRequest(
                    f"CLUSTERPLANE_ADMIN_API_KEY names key {existing.id}, which this "
                    "database holds with another secret"
                )
            current = key_lookup(key, lookup_keys[0])
            if existing.lookup is not None and existing.lookup != current:
                existing.lookup = current
            return None
        issue_key(
            session,
            user_id=admin.id,
            project_id=DEFAULT_PROJECT_ID,
            now=now,
            lookup_key=lookup_keys[0],
            is_admin=True,
            secret=key,
            name="bootstrap",
        )
        return None
    active_admin = session.scalar(
        select(ApiKeyRow.id)
        .where(ApiKeyRow.is_admin.is_(True), ApiKeyRow.revoked_at.is_(None))
        .limit(1)
    )
    if active_admin is not None:
        return None
    return issue_key(
        session,
        user_id=admin.id,
        project_id=DEFAULT_PROJECT_ID,
        now=now,
        lookup_key=lookup_keys[0],
        is_admin=True,
        name="bootstrap",
    )


def generate_key_text() -> str:
    """A fresh key in the accepted format, for scripts that want to pick their own."""
    return f"cp_key_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"

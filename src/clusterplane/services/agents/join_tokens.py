"""One-time join tokens: how an operator lets a new host enroll its node agent.

A token is `cpjt_<id>_<secret>`: 256 random bits of secret, of which only an HMAC-SHA256
keyed by a per-token random salt is stored. It names the region (and optionally fabric,
block, rack) the host joins, expires, and is single-use: `consume` binds it to the first
host that enrolls with it, and any later use by another host is refused. Times are wall
time (operators and agents live on it, whatever the fleet clock's scale).

Who calls it: the admin join-token API (create, list, revoke) and `services.agents.agent_hosts`
(consume, inside the enrollment transaction, so a refused enrollment writes nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clusterplane.db.rows import JoinTokenRow, RegionRow
from clusterplane.errors import InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from clusterplane.settings import AgentSettings

TOKEN_PATTERN = re.compile(r"^cpjt_(jt_[0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Placement:
    region: str
    fabric: str | None = None
    block: str | None = None
    rack: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    row: JoinTokenRow
    token: str  # shown once, never stored


def _digest(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode(), hashlib.sha256).hexdigest()


def create_token(
    session: Session,
    settings: AgentSettings,
    where: Placement,
    *,
    ttl_seconds: float | None,
    created_by: str,
    now: datetime,
) -> IssuedToken:
    ttl = settings.join_token_default_ttl_seconds if ttl_seconds is None else ttl_seconds
    if not 0 < ttl <= settings.join_token_max_ttl_seconds:
        limit = int(settings.join_token_max_ttl_seconds)
        raise InvalidRequest(f"ttl_seconds must be in (0, {limit}]", param="ttl_seconds")
    if session.get(RegionRow, where.region) is None:
        raise InvalidRequest(f"unknown region '{where.region}'", param="region")
    _check_open_limit(session, settings, now)
    token_id = "jt_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    row = JoinTokenRow(
        id=token_id,
        salt=salt,
        secret_hmac=_digest(salt, secret),
        region=where.region,
        fabric=where.fabric,
        block=where.block,
        rack=where.rack,
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    session.add(row)
    session.flush()
    return IssuedToken(row=row, token=f"cpjt_{token_id}_{secret}")


def _check_open_limit(session: Session, settings: AgentSettings, now: datetime) -> None:
    """The operator's bound on tokens that could still enroll a host."""
    open_count = session.scalar(
        select(func.count())
        .select_from(JoinTokenRow)
        .where(
            JoinTokenRow.used_at.is_(None),
            JoinTokenRow.revoked_at.is_(None),
            JoinTokenRow.expires_at > now,
        )
    )
    if (open_count or 0) >= settings.max_open_join_tokens:
        raise PermissionDenied(
            f"{open_count} join tokens are open (the limit): revoke some or let them expire"
        )


def consume(session: Session, token: str, *, host_id: str, now: datetime) -> JoinTokenRow:
    """The token's row, bound to `host_id`; refused (401/403) when bad, expired or used.

    The row is locked (`FOR UPDATE` where the database has it) so two hosts racing with
    one token cannot both win.
    """
    match = TOKEN_PATTERN.match(token.strip())
    if match is None:
        raise Unauthenticated("invalid join token")
    token_id, secret = match.groups()
    row = session.scalar(select(JoinTokenRow).where(JoinTokenRow.id == token_id).with_for_update())
    if row is None or not hmac.compare_digest(row.secret_hmac, _digest(row.salt, secret)):
        raise Unauthenticated("invalid join token")
    if row.revoked_at is not None:
        raise PermissionDenied("this join token was revoked")
    if row.expires_at <= now:
        raise PermissionDenied("this join token has expired")
    if row.host_id is not None and row.host_id != host_id:
        raise PermissionDenied("this join token was already used by another host")
    if row.host_id is None:
        row.host_id = host_id
        row.used_at = now
    return row


def list_tokens(session: Session) -> list[JoinTokenRow]:
    return list(session.scalars(select(JoinTokenRow).order_by(JoinTokenRow.created_at)))


def revoke(session: Session, token_id: str, *, now: datetime) -> JoinTokenRow:
    row = session.get(JoinTokenRow, token_id)
    if row is None:
        raise NotFound(f"join token '{token_id}' not found", param="token_id")
    if row.revoked_at is None:
        row.revoked_at = now
    return row


def token_view(row: JoinTokenRow, now: datetime) -> dict[str, Any]:
    """A token as the operator sees it: never its secret."""
    if row.revoked_at is not None:
        state = "revoked"
    elif row.host_id is not None:
        state = "used"
    elif row.expires_at <= now:
        state = "expired"
    else:
        state = "open"
    return {
        "id": row.id,
        "region": row.region,
        "fabric": row.fabric,
        "block": row.block,
        "rack": row.rack,
        "state": state,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "used_at": row.used_at,
        "host_id": row.host_id,
        "revoked_at": row.revoked_at,
    }

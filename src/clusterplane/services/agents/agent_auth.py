"""Who is calling, for node agents: a signed request proves it holds its host's key.

After enrollment every agent call carries its host id, a timestamp, a nonce and an
Ed25519 signature over `domain.agent_protocol.canonical_request` (method, path and query,
timestamp, nonce, host id, SHA-256 of the body). `authenticate` accepts it only when the
signature verifies with the key bound to that host at enrollment, the timestamp is within
the clock-skew window, and the nonce was not seen in that window (a replay is refused).
A valid call is also the agent's sign of life (`last_seen_at`).

Who calls it: the agent API (`api/routers/agents.py`), in a short transaction before any
waiting. Errors are 401 (`Unauthenticated`) and never say which check failed beyond the
class of problem.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clusterplane.db.rows import AgentHostRow, AgentNonceRow
from clusterplane.domain.agent_protocol import canonical_request
from clusterplane.errors import InvalidRequest, PermissionDenied, Unauthenticated
from clusterplane.settings import AgentSettings

NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path: str  # with its query string
    host_id: str | None
    timestamp: str | None
    nonce: str | None
    signature: str | None
    body: bytes


def load_public_key(text: str) -> Ed25519PublicKey:
    """An agent's public key from its base64 form; 400 when it is not an Ed25519 key."""
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            "public_key must be a base64 raw Ed25519 public key", param="public_key"
        ) from None


def authenticate(
    session: Session, settings: AgentSettings, request: SignedRequest, *, now: datetime
) -> AgentHostRow:
    """The calling agent's host record; `Unauthenticated` unless the request is proven."""
    if not (request.host_id and request.timestamp and request.nonce and request.signature):
        raise Unauthenticated("unsigned agent request: sign it with the host's key")
    try:
        sent = datetime.fromtimestamp(int(request.timestamp) / 1000, now.tzinfo)
        signature = base64.b64decode(request.signature, validate=True)
    except (ValueError, OverflowError, binascii.Error):
        raise Unauthenticated("malformed agent signature headers") from None
    skew = timedelta(seconds=settings.clock_skew_seconds)
    if abs(now - sent) > skew:
        raise Unauthenticated("request timestamp is outside the allowed clock skew")
    if not NONCE.match(request.nonce):
        raise Unauthenticated("malformed request nonce")
    row = session.get(AgentHostRow, request.host_id)
    if row is None:
        raise Unauthenticated("unknown agent host")
    message = canonical_request(
        method=request.method,
        path=request.path,
        timestamp=request.timestamp,
        nonce=request.nonce,
        host_id=request.host_id,
        body=request.body,
    )
    try:
        load_public_key(row.public_key).verify(signature, message)
    except (InvalidSignature, InvalidRequest):
        raise Unauthenticated("bad agent signature") from None
    _remember_nonce(session, row.host_id, request.nonce, expires_at=now + 2 * skew)
    row.last_seen_at = now
    return row


def _remember_nonce(session: Session, host_id: str, nonce: str, *, expires_at: datetime) -> None:
    try:
        with session.begin_nested():
            session.add(AgentNonceRow(host_id=host_id, nonce=nonce, expires_at=expires_at))
    except IntegrityError:
        raise Unauthenticated("replayed agent request") from None


def require_own_host(caller_host_id: str, host_id: str) -> None:
    """A host's credential reads and writes its own host's records only."""
    if caller_host_id != host_id:
        raise PermissionDenied("this agent's credential is for another host")


def forget_old_nonces(session: Session, *, now: datetime) -> int:
    result = session.execute(delete(AgentNonceRow).where(AgentNonceRow.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)

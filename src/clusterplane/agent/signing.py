"""Signed requests: an httpx `Auth` that signs every call with the host's Ed25519 key.

The signature covers `domain.agent_protocol.canonical_request` (method, path with query,
millisecond timestamp, random nonce, host id, SHA-256 of the body), so the server can
check possession of the key, the freshness of the call, and that nothing was altered or
replayed, without TLS client certificates.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Generator

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clusterplane.domain import agent_protocol as wire


def sign_headers(
    key: Ed25519PrivateKey,
    *,
    host_id: str,
    method: str,
    path: str,
    body: bytes,
    now_ms: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    nonce = nonce or secrets.token_urlsafe(18)
    message = wire.canonical_request(
        method=method, path=path, timestamp=timestamp, nonce=nonce, host_id=host_id, body=body
    )
    return {
        wire.HOST_HEADER: host_id,
        wire.TIMESTAMP_HEADER: timestamp,
        wire.NONCE_HEADER: nonce,
        wire.SIGNATURE_HEADER: base64.b64encode(key.sign(message)).decode(),
    }


class SignedAuth(httpx.Auth):
    requires_request_body = True

    def __init__(self, key: Ed25519PrivateKey, host_id: Callable[[], str]):
        self._key = key
        self._host_id = host_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        host_id = self._host_id()
        if not host_id:  # not enrolled yet: enrollment carries its join token instead
            yield request
            return
        target = request.url.raw_path.decode()
        request.headers.update(
            sign_headers(
                self._key,
                host_id=host_id,
                method=request.method,
                path=target,
                body=request.content,
            )
        )
        yield request

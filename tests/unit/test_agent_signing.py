"""Signed agent requests: what is signed, and that any change breaks the signature."""

from __future__ import annotations

import argparse
import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clusterplane.agent.identity import load_or_create_key, public_key_text
from clusterplane.agent.signing import sign_headers
from clusterplane.cli.admin import parse_ttl
from clusterplane.domain import agent_protocol as wire
from clusterplane.errors import InvalidRequest
from clusterplane.services.agents.agent_auth import load_public_key


def _verify(key: Ed25519PrivateKey, headers: dict[str, str], **request: object) -> None:
    message = wire.canonical_request(
        method=str(request["method"]),
        path=str(request["path"]),
        timestamp=headers[wire.TIMESTAMP_HEADER],
        nonce=headers[wire.NONCE_HEADER],
        host_id=headers[wire.HOST_HEADER],
        body=request["body"],  # type: ignore[arg-type]
    )
    signature = base64.b64decode(headers[wire.SIGNATURE_HEADER])
    load_public_key(public_key_text(key)).verify(signature, message)


def test_a_signature_covers_method_path_body_time_nonce_and_host():
    key = Ed25519PrivateKey.generate()
    request = {"method": "POST", "path": "/agent/v1/hosts/h1/status", "body": b'{"a":1}'}
    headers = sign_headers(key, host_id="h1", **request)  # type: ignore[arg-type]
    _verify(key, headers, **request)
    for changed in (
        {**request, "method": "PUT"},
        {**request, "path": "/agent/v1/hosts/h2/status"},
        {**request, "body": b'{"a":2}'},
    ):
        with pytest.raises(InvalidSignature):
            _verify(key, headers, **changed)
    for header in (wire.TIMESTAMP_HEADER, wire.NONCE_HEADER, wire.HOST_HEADER):
        with pytest.raises(InvalidSignature):
            _verify(key, {**headers, header: headers[header] + "0"}, **request)


def test_each_request_gets_a_fresh_nonce_and_the_current_time():
    key = Ed25519PrivateKey.generate()
    first = sign_headers(key, host_id="h", method="GET", path="/", body=b"")
    second = sign_headers(key, host_id="h", method="GET", path="/", body=b"")
    assert first[wire.NONCE_HEADER] != second[wire.NONCE_HEADER]
    sent = datetime.fromtimestamp(int(first[wire.TIMESTAMP_HEADER]) / 1000, UTC)
    assert abs(sent - datetime.now(UTC)) < timedelta(seconds=5)


def test_the_key_is_made_once_with_mode_0600_and_reused(tmp_path):
    key = load_or_create_key(tmp_path / "state")
    path = tmp_path / "state" / "agent.key"
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_or_create_key(tmp_path / "state")
    assert public_key_text(again) == public_key_text(key)


def test_a_public_key_that_is_not_ed25519_is_refused():
    with pytest.raises(InvalidRequest):
        load_public_key("bm90IGEga2V5")
    with pytest.raises(InvalidRequest):
        load_public_key("%%%")


def test_join_token_lifetimes_read_as_durations():
    assert [parse_ttl(t) for t in ("90s", "30m", "12h", "7d", "45")] == [
        90,
        1800,
        43200,
        604800,
        45,
    ]
    for bad in ("", "soon", "-5m", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_ttl(bad)

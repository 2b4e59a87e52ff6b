"""Encryption at rest of the secrets clusterplane keeps: private keys and kubeconfigs.

What it owns:
    `SecretBox`, which seals a text with AES-256-GCM under a key derived (HKDF-SHA256)
    from the operator's server secret, and opens it again. A sealed text reads
    ``cp1.<key id>.<base64(nonce | ciphertext)>``; the key id (8 hex digits of a hash
    of the derived key) says which server key sealed it, so a box built with the current
    key and the previous ones opens everything while new seals use the current key.

Invariants:
    * Every seal is bound to a `context` (for example ``cluster:<id>:ca_key``) given as
      associated data: a sealed value copied to another row or field does not open.
    * Text that does not start with ``cp1.`` was stored before encryption at rest existed;
      `open` returns it unchanged and `is_sealed` says so, so a re-seal can find it.
    * Nothing here logs or returns key material.
    * A box without a key (settings without one: only library and test use, since
      `clusterplane serve` always has one) stores text as it is and says so in the log
      once; it still opens what a previous key sealed.
    * `lookup_keys` are HMAC keys derived from the same secrets for another purpose (finding
      an operator-chosen API key by a keyed hash): what the database holds never lets
      anyone test a guessed API key without the server key. Current key first.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import os

import pybase64
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clusterplane.errors import Conflict, InvalidRequest
from clusterplane.settings import CredentialSettings

__all__ = ["MIN_SECRET_LENGTH", "SealError", "SecretBox", "is_sealed", "sealed_key_id"]

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32
_PREFIX = "cp1"
_NONCE_BYTES = 12


class SealError(Conflict):
    """A sealed value that no configured key opens (wrong key, or tampered): 409, since
    no retry of the same request helps until the operator gives the server that key."""

    error_type = "credentials_unavailable"


def _derive(secret: str) -> bytes:
    if len(secret) < MIN_SECRET_LENGTH:
        raise InvalidRequest(
            f"the credentials key must be at least {MIN_SECRET_LENGTH} characters",
            param="credentials_key",
        )
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"clusterplane credentials at rest",
        info=b"aes-256-gcm v1",
    ).derive(secret.encode("utf-8"))


def _lookup_key(secret: str | None) -> bytes:
    material = (secret or "clusterplane without a credentials key").encode("utf-8")
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"clusterplane api keys", info=b"lookup v1"
    ).derive(material)


KEY_ID_LENGTH = 8


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"key-id:" + key).hexdigest()[:KEY_ID_LENGTH]


class SecretBox:
    """Seals with the current key; opens with the current or any previous key."""

    def __init__(self, secret: str | None, previous: tuple[str, ...] = ()):
        self._keys: dict[str, AESGCM] = {}
        self._current_id: str | None = None
        if secret is not None:
            current = _derive(secret)
            self._current_id = _key_id(current)
            self._keys[self._current_id] = AESGCM(current)
        for old in previous:
            key = _derive(old)
            self._keys.setdefault(_key_id(key), AESGCM(key))
        lookups = [_lookup_key(secret)] + [_lookup_key(old) for old in previous]
        self.lookup_keys: tuple[bytes, ...] = tuple(dict.fromkeys(lookups))

    @classmethod
    def from_settings(cls, settings: CredentialSettings) -> SecretBox:
        if settings.key is None:
            log.warning(
                "no credentials key (CLUSTERPLANE_CREDENTIALS_KEY): cluster private keys "
                "are stored UNENCRYPTED"
            )
        return cls(settings.key, settings.previous_keys)

    @property
    def key_id(self) -> str | None:
        """Which key new seals use (never the key itself); None: stored as they are."""
        return self._current_id

    def seal(self, plaintext: str, *, context: str) -> str:
        if self._current_id is None:
            return plaintext
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        body = pybase64.b64encode(nonce + sealed).decode("ascii")
        return f"{_PREFIX}.{self._current_id}.{body}"

    def open(self, value: str, *, context: str) -> str:
        if not is_sealed(value):
            return value
        _, key_id, body = value.split(".", 2)
        aead = self._keys.get(key_id)
        if aead is None:
            raise SealError(f"{context} was sealed with a credentials key this server lacks")
        try:
            # Strict (only the alphabet, as `seal` writes it), and SIMD: every GET and
            # listed cluster opens a kubeconfig, and the standard library's decoder took
            # 10 of the 14 µs an open cost.
            raw = pybase64.b64decode(body, validate=True)
        except binascii.Error:
            raise SealError(f"{context} is not a readable sealed value") from None
        try:
            plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        except InvalidTag:
            raise SealError(f"{context} does not open: tampered, or not sealed for it") from None
        return plain.decode("utf-8")

    def key_ids(self) -> frozenset[str]:
        """The ids of every key this box opens with (current and previous)."""
        return frozenset(self._keys)

    def is_current(self, value: str) -> bool:
        """Whether `value` is sealed with the current key (else a re-seal would change it)."""
        if self._current_id is None:
            return not is_sealed(value)
        return is_sealed(value) and value.split(".", 2)[1] == self._current_id


def is_sealed(value: str) -> bool:
    return value.startswith(_PREFIX + ".") and value.count(".") >= 2


# How many leading characters of a sealed value name its key ("cp1.<key id>."): enough
# for `sealed_key_id`, so a scan of many values can read only these.
SEALED_HEAD = len(_PREFIX) + 1 + KEY_ID_LENGTH + 1


def sealed_key_id(value: str) -> str | None:
    """Which key sealed `value` (None: not sealed)."""
    return value.split(".", 2)[1] if is_sealed(value) else None

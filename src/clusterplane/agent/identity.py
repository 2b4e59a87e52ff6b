"""The agent's identity in its state directory: its Ed25519 key and its enrollment.

`state_dir/agent.key` (PEM, mode 0600) is made once and kept; `state_dir/enrollment.json`
says which server and host it belongs to. Both survive restarts, so the join token is
needed only for the first start. Files are written atomically (temp file, fsync, rename).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE = "agent.key"
ENROLLMENT_FILE = "enrollment.json"


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(temp, mode)
    os.replace(temp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    return loaded


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=1, sort_keys=True).encode())


def load_or_create_key(state_dir: Path) -> Ed25519PrivateKey:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, 0o600)
    return key


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Enrolled:
    server: str
    host_id: str
    host_name: str


def load_enrollment(state_dir: Path) -> Enrolled | None:
    data = read_json(state_dir / ENROLLMENT_FILE)
    if data is None:
        return None
    return Enrolled(server=data["server"], host_id=data["host_id"], host_name=data["host_name"])


def save_enrollment(state_dir: Path, enrolled: Enrolled) -> None:
    write_json(
        state_dir / ENROLLMENT_FILE,
        {"server": enrolled.server, "host_id": enrolled.host_id, "host_name": enrolled.host_name},
    )

"""Identifier minting: one place decides what every id looks like.

Ids are random (UUID 4 and hex tokens) from a generator that a deterministic simulation
can seed (`seed`), so a run replays with the same ids, host choices and durations.
"""

from __future__ import annotations

import random
import secrets
import uuid

_rng: random.Random | None = None


def seed(value: int | None) -> None:
    """Make ids reproducible from `value` (None: back to the system's randomness)."""
    global _rng
    _rng = random.Random(value) if value is not None else None


def new_uuid() -> str:
    if _rng is None:
        return str(uuid.uuid4())
    return str(uuid.UUID(int=_rng.getrandbits(128), version=4))


def new_prefixed(prefix: str, nbytes: int = 8) -> str:
    token = (
        secrets.token_hex(nbytes)
        if _rng is None
        else _rng.getrandbits(8 * nbytes).to_bytes(nbytes, "big").hex()
    )
    return f"{prefix}_{token}"


def new_seed() -> int:
    """A seed for a new object's simulated randomness."""
    return (_rng or random.SystemRandom()).randrange(2**31)

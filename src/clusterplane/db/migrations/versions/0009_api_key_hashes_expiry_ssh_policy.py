"""api_keys: salted hashes, a keyed lookup, expiry; clusters: the SSH certificate policy

API keys were stored as the unsalted SHA-256 of their secret, and an operator-chosen key's
id was 64 bits of that hash. Each row now holds `secret_hash`, a salted hash of that same
SHA-256 (scrypt for chosen keys, HMAC-SHA256 for issued ones, whose secrets are random),
so every existing key keeps working and no plain hash is left in the database. A chosen
key gets a random id; it is found through `lookup`, a keyed hash the server fills in the
first time it sees the key (until then, the old hash prefix: see services/access/auth.py).
`expires_at` ends a key at a wall-clock time. `clusters.ssh_policy` holds the
operator's SSH certificate policy (NULL: the safe defaults).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import sqlalchemy as sa
from alembic import op

import clusterplane.db.types

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# The formats of services/access/auth.py at this revision (a migration must not import services).
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
LEGACY_LOOKUP = "sha256:"


def _hashed(digest: str, chosen: bool) -> str:
    salt = os.urandom(16)
    if chosen:
        value = hashlib.scrypt(digest.encode(), salt=salt, **SCRYPT, dklen=32)
        return f"scrypt${salt.hex()}${value.hex()}"
    value = hmac.new(salt, digest.encode(), hashlib.sha256).digest()
    return f"hmac-sha256${salt.hex()}${value.hex()}"


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('secret_hash', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('lookup', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column('expires_at', clusterplane.db.types.UTCDateTime(), nullable=True)
        )
        batch_op.create_index('ix_api_keys_lookup', ['lookup'], unique=True)
    conn = op.get_bind()
    rows = conn.execute(sa.text('SELECT id, secret_sha256 FROM api_keys')).all()
    for key_id, digest in rows:
        chosen = key_id == "key_" + digest[:16]
        params = {"id": key_id, "hash": _hashed(digest, chosen), "lookup": None}
        if chosen:
            new_id = "key_" + secrets.token_hex(8)
            params["lookup"] = LEGACY_LOOKUP + digest[:16]
            conn.execute(
                sa.text('UPDATE idempotency_records SET api_key_id = :new WHERE api_key_id = :id'),
                {"new": new_id, "id": key_id},
            )
            params["new"] = new_id
        else:
            params["new"] = key_id
        conn.execute(
            sa.text(
                'UPDATE api_keys SET id = :new, secret_hash = :hash, lookup = :lookup '
                'WHERE id = :id'
            ),
            params,
        )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.alter_column('secret_hash', existing_type=sa.String(length=200), nullable=False)
        batch_op.drop_column('secret_sha256')
    with op.batch_alter_table('clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ssh_policy', sa.JSON(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("API key hashes cannot be turned back into plain SHA-256")

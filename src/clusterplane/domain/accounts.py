"""The accounts a cluster's nodes have for its people: which logins, with which uids. Pure.

The logins are those the cluster's SSH policy (`domain.ssh_policy`) lets a certificate
name: exactly its `allowed_logins` when the operator listed them, else `DEFAULT_LOGIN`
(the login `clusterplane ssh` uses when given none). `root` is never made: every host has
it already.

Uids are derived from the login name alone, so one login has the same uid on every node of
a cluster, across restarts and re-publishing, and on a shared volume that outlives the
cluster and is attached to the next one: `UID_BASE` plus a hash of the name in a range of
`UID_SPAN`. Two logins of one cluster that hash alike are told apart by probing upwards,
in name order, so the outcome depends only on the set of logins.
"""

from __future__ import annotations

import hashlib

from clusterplane.domain.ssh_policy import ROOT, SshPolicy

DEFAULT_LOGIN = "ubuntu"
UID_BASE = 10_000
UID_SPAN = 50_000  # uids 10000..59999: above distributions' first users, below nobody


def node_logins(policy: SshPolicy) -> tuple[str, ...]:
    """The accounts a node makes for the cluster's people, sorted."""
    if policy.allowed_logins is None:
        return (DEFAULT_LOGIN,)
    return tuple(sorted({name for name in policy.allowed_logins if name != ROOT}))


def _hashed_uid(name: str) -> int:
    digest = hashlib.sha256(f"clusterplane-login:{name}".encode()).digest()
    return UID_BASE + int.from_bytes(digest[:8], "big") % UID_SPAN


def login_uids(logins: tuple[str, ...]) -> dict[str, int]:
    """Each login's uid: its hash, or the next free one above it on a collision."""
    taken: set[int] = set()
    uids: dict[str, int] = {}
    for name in sorted(set(logins)):
        uid = _hashed_uid(name)
        while uid in taken:
            uid = UID_BASE + (uid - UID_BASE + 1) % UID_SPAN
        taken.add(uid)
        uids[name] = uid
    return uids

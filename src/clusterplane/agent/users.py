"""The cluster's users: accounts, groups and SSH authorized keys, created idempotently.

An account is (re)written only when it differs from what the assignment says. A regular
account the host already had (uid 1000 or more, not created by the agent: `ubuntu` on an
Ubuntu image) is used as it is: never changed, never removed, its home made (with its own
uid) only if missing, as under a shared `/home`; it is reported in `details["existing"]`.
A system account of that name, or a new account whose uid or gid another account or group
of the host already has, fails the section with a message saying which. Removal deletes
only accounts in `applied.users`, and their home only if the agent created it outside
any mount (a home on the cluster's shared volume belongs to the volume).
"""

from __future__ import annotations

import os

from clusterplane.domain.agent_protocol import SectionResult, UserSpec

from .applied import Applied, AppliedUser
from .hostops import HostOps


def _home(user: UserSpec) -> str:
    return user.home or f"/home/{user.name}"


FIRST_REGULAR_UID = 1000
NOBODY = 65534


def _use_existing(ops: HostOps, applied: Applied, user: UserSpec, row: list[str]) -> bool:
    """Use the host's own account `row` for `user`; True if its home had to be made."""
    uid, gid = int(row[2]), int(row[3])
    if uid < FIRST_REGULAR_UID or uid == NOBODY:
        raise ValueError(f"user '{user.name}' is a system account on this host (uid {uid})")
    if user.name not in applied.existing:
        applied.existing.append(user.name)
    return ops.makedirs(row[5] or _home(user), 0o700, owner=(uid, gid))


def _check_free(ops: HostOps, user: UserSpec, gid: int) -> None:
    """A new account's uid and gid are nobody else's on this host."""
    for row in ops.entries("passwd"):
        if row[0] != user.name and len(row) > 2 and row[2] == str(user.uid):
            raise ValueError(f"uid {user.uid} of '{user.name}' belongs to '{row[0]}' here")
    for row in ops.entries("group"):
        if row[0] != user.name and len(row) > 2 and row[2] == str(gid):
            raise ValueError(f"gid {gid} of '{user.name}' belongs to group '{row[0]}' here")


def ensure_user(ops: HostOps, applied: Applied, user: UserSpec) -> bool:
    """Make `user` exist as specified; True if anything changed."""
    existing = {row[0]: row for row in ops.entries("passwd")}
    if user.name in existing and user.name not in applied.users:
        return _use_existing(ops, applied, user, existing[user.name])
    gid = user.gid if user.gid is not None else user.uid
    if user.name not in applied.users and any(r[0] == user.name for r in ops.entries("group")):
        raise ValueError(f"group '{user.name}' already exists on this host and is not ours")
    _check_free(ops, user, gid)
    home = _home(user)
    changed = ops.put_entry("group", [user.name, "x", str(gid), ""])
    changed |= ops.put_entry(
        "passwd", [user.name, "x", str(user.uid), str(gid), "", home, user.shell]
    )
    if ops.path("/etc/shadow").exists():
        changed |= ops.put_entry("shadow", [user.name, "!", "", "", "", "", "", "", ""])
    previous = applied.users.get(user.name)
    created_home = previous.created_home if previous else False
    if ops.makedirs(home, 0o700, owner=(user.uid, gid)):
        created_home, changed = True, True
    applied.users[user.name] = AppliedUser(
        uid=user.uid, gid=gid, home=home, created_home=created_home
    )
    keys = "".join(key.strip() + "\n" for key in user.authorized_keys)
    ssh_dir = f"{home}/.ssh"
    if keys or ops.path(f"{ssh_dir}/authorized_keys").exists():
        changed |= ops.makedirs(ssh_dir, 0o700, owner=(user.uid, gid))
        if ops.write(f"{ssh_dir}/authorized_keys", keys, 0o600):
            os.chown(ops.path(f"{ssh_dir}/authorized_keys"), user.uid, gid)
            changed = True
    return changed


def remove_user(ops: HostOps, applied: Applied, name: str) -> bool:
    record = applied.users.get(name)
    if record is None:
        return False
    changed = ops.drop_entry("passwd", name)
    changed |= ops.drop_entry("group", name)
    changed |= ops.drop_entry("shadow", name)
    inside_mount = any(
        record.home == m or record.home.startswith(m.rstrip("/") + "/") for m in applied.mounts
    )
    if record.created_home and not inside_mount:
        changed |= ops.remove_tree(record.home)
    del applied.users[name]
    return changed


def converge_users(ops: HostOps, applied: Applied, users: list[UserSpec]) -> SectionResult:
    wanted = {u.name for u in users}
    changed = [name for name in sorted(applied.users) if name not in wanted]
    for name in changed:
        remove_user(ops, applied, name)
    applied.existing = [name for name in applied.existing if name in wanted]
    failed = []
    for user in users:
        try:
            if ensure_user(ops, applied, user):
                changed.append(user.name)
        except (OSError, ValueError) as exc:
            failed.append(f"{user.name}: {exc}")
    if failed:
        return SectionResult(ok=False, message="; ".join(failed))
    details = {"users": sorted(wanted), "changed": changed, "existing": list(applied.existing)}
    return SectionResult(ok=True, details=details)

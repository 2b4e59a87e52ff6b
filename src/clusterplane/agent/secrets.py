"""The cluster's secrets on this host: files under /etc/clusterplane/secrets, mode 0600.

They arrive only inside this host's own assignment and are wiped (overwritten, then
removed) when the host leaves the cluster or a secret leaves the assignment. Runtimes
read them from here (the munge key, CA material, tokens).
"""

from __future__ import annotations

import re

from clusterplane.domain.agent_protocol import SectionResult

from .applied import Applied
from .hostops import HostOps

DIRECTORY = "/etc/clusterplane/secrets"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def secret_path(name: str) -> str:
    return f"{DIRECTORY}/{name}"


def _wipe(ops: HostOps, name: str) -> None:
    path = ops.path(secret_path(name))
    if path.exists():
        path.write_bytes(b"\0" * path.stat().st_size)
        path.unlink()


def converge_secrets(ops: HostOps, applied: Applied, secrets: dict[str, str]) -> SectionResult:
    bad = [name for name in secrets if not NAME.match(name)]
    if bad:
        return SectionResult(ok=False, message=f"bad secret names: {', '.join(sorted(bad))}")
    for name in [n for n in applied.secrets if n not in secrets]:
        _wipe(ops, name)
        applied.secrets.remove(name)
    if secrets:
        ops.makedirs(DIRECTORY, 0o700)
    for name, value in sorted(secrets.items()):
        ops.write(secret_path(name), value, 0o600)
        if name not in applied.secrets:
            applied.secrets.append(name)
    return SectionResult(ok=True, details={"secrets": sorted(secrets)})


def wipe_secrets(ops: HostOps, applied: Applied) -> SectionResult:
    result = converge_secrets(ops, applied, {})
    ops.remove_tree(DIRECTORY)
    return result

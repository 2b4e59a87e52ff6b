"""Trust the cluster's SSH user CA: `TrustedUserCAKeys` in an sshd config drop-in.

Writes the CA public keys to `/etc/ssh/clusterplane_user_ca.pub` and a drop-in
`/etc/ssh/sshd_config.d/50-clusterplane.conf` that points sshd at it, then reloads sshd
(the configured command) when either changed. Removal deletes both and reloads.
"""

from __future__ import annotations

from clusterplane.domain.agent_protocol import SectionResult

from .applied import Applied
from .hostops import HostOps

CA_FILE = "/etc/ssh/clusterplane_user_ca.pub"
DROP_IN = "/etc/ssh/sshd_config.d/50-clusterplane.conf"


def _reload(ops: HostOps, reload_command: list[str]) -> str:
    if not reload_command:
        return ""
    try:
        ops.run(reload_command)
    except OSError as exc:
        return f"sshd not reloaded: {exc}"
    return ""


def converge_ssh_ca(
    ops: HostOps, applied: Applied, keys: list[str], reload_command: list[str]
) -> SectionResult:
    if not keys:
        return remove_ssh_ca(ops, applied, reload_command)
    ops.makedirs("/etc/ssh/sshd_config.d")
    changed = ops.write(CA_FILE, "".join(k.strip() + "\n" for k in keys), 0o644)
    changed |= ops.write(DROP_IN, f"TrustedUserCAKeys {CA_FILE}\n", 0o644)
    applied.ssh_ca = True
    note = _reload(ops, reload_command) if changed else ""
    return SectionResult(ok=True, message=note, details={"changed": changed})


def remove_ssh_ca(ops: HostOps, applied: Applied, reload_command: list[str]) -> SectionResult:
    changed = ops.remove(DROP_IN) | ops.remove(CA_FILE)
    applied.ssh_ca = False
    note = _reload(ops, reload_command) if changed else ""
    return SectionResult(ok=True, message=note, details={"changed": changed})

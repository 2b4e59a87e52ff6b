"""A cluster's SSH certificate policy: which logins its certificates may name and which
OpenSSH extensions they carry. Pure.

The operator sets it per cluster (`PUT /admin/v1/clusters/{id}/ssh-policy`); a cluster
without one has `DEFAULT`:

    * any POSIX login except ``root`` (`allowed_logins` None); a list allows exactly
      those logins, ``root`` only when listed;
    * a terminal (``permit-pty``), and nothing else: no agent or X11 forwarding and no
      ``~/.ssh/rc``, each only when the operator turns it on;
    * port forwarding (`permit_port_forwarding` None) only on a cluster with a jump host,
      because ProxyJump reaches the node through a forwarded channel of the jump host's
      session; True or False decides it for any cluster.

A certificate names one login and carries exactly the extensions the policy permits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ROOT = "root"

# Policy field -> the OpenSSH certificate extension it grants.
EXTENSIONS = {
    "permit_pty": "permit-pty",
    "permit_agent_forwarding": "permit-agent-forwarding",
    "permit_port_forwarding": "permit-port-forwarding",
    "permit_x11_forwarding": "permit-X11-forwarding",
    "permit_user_rc": "permit-user-rc",
}


@dataclass(frozen=True)
class SshPolicy:
    allowed_logins: tuple[str, ...] | None = None
    permit_pty: bool = True
    permit_agent_forwarding: bool = False
    permit_port_forwarding: bool | None = None
    permit_x11_forwarding: bool = False
    permit_user_rc: bool = False

    def refusal(self, login: str) -> str | None:
        """Why `login` may not be certified on this cluster (None: it may)."""
        if self.allowed_logins is None:
            if login == ROOT:
                return (
                    "login 'root' is not allowed on this cluster unless the operator "
                    "lists it in the cluster's SSH policy"
                )
            return None
        if login not in self.allowed_logins:
            allowed = ", ".join(self.allowed_logins) or "none"
            return f"login '{login}' is not allowed on this cluster (allowed: {allowed})"
        return None

    def extensions(self, *, jumphost: bool) -> tuple[str, ...]:
        """The certificate extensions granted on a cluster (with a jump host or not)."""
        granted = {name: bool(getattr(self, name)) for name in EXTENSIONS}
        if self.permit_port_forwarding is None:
            granted["permit_port_forwarding"] = jumphost
        return tuple(sorted(EXTENSIONS[name] for name, on in granted.items() if on))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.allowed_logins is not None:
            data["allowed_logins"] = list(self.allowed_logins)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SshPolicy:
        """A stored policy; absent fields take the defaults."""
        if not data:
            return DEFAULT
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("allowed_logins") is not None:
            values["allowed_logins"] = tuple(values["allowed_logins"])
        return cls(**values)


DEFAULT = SshPolicy()

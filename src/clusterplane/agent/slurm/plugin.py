"""The agent's `slurm` runtime: an assignment's `slurm` section run on this very host.

Registered as the `clusterplane.agent_runtimes` entry point `slurm`. It hands the section
to `SlurmRuntime` on `LocalHost` (the agent's root, the runtime's directory in the agent's
state directory), or on the `SlurmHost` its `host` makes (tests: a namespaced host). The
control plane sends the munge key as a secret of the assignment, not inside the section:
`munge_key_secret` names it, and it is read from the cluster's secrets directory here, so
the key is written to disk only where secrets go and wiped with them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from clusterplane.agent.runtimes import RuntimeContext
from clusterplane.agent.slurm.host import LocalHost, SlurmHost
from clusterplane.agent.slurm.runtime import SlurmRuntime

SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def local_host(ctx: RuntimeContext) -> SlurmHost:
    return LocalHost(ctx.state_dir, ctx.ops.root)


def _failed(message: str) -> dict[str, Any]:
    return {"ok": False, "phase": "failed", "message": message, "messages": [message]}


class SlurmPlugin:
    def __init__(self, host: Callable[[RuntimeContext], SlurmHost] = local_host):
        self.host = host

    def _runtime(self, ctx: RuntimeContext) -> SlurmRuntime:
        return SlurmRuntime(self.host(ctx))

    def converge(self, section: dict[str, Any], ctx: RuntimeContext) -> dict[str, Any]:
        raw = dict(section)
        secret = raw.pop("munge_key_secret", None)
        if secret is not None:
            if not isinstance(secret, str) or not SECRET_NAME.match(secret):
                return _failed("munge_key_secret must name a secret of the assignment")
            key = ctx.ops.read(f"{ctx.secrets_dir}/{secret}")
            if key is None:
                return _failed(f"the assignment has no secret '{secret}'")
            raw["munge_key"] = key.strip()
        return self._runtime(ctx).converge(raw)

    def teardown(self, ctx: RuntimeContext) -> None:
        self._runtime(ctx).teardown()

"""The agent's `kubernetes` runtime: an assignment's `kubernetes` section run on this host.

Registered as the `clusterplane.agent_runtimes` entry point `kubernetes`. It hands the
section to `KubernetesRuntime` on `LocalHost`. The control plane sends the cluster's PEM
material as secrets of the assignment, not inside the section: `ca_cert_secret`,
`ca_key_secret` (control plane), `node_cert_secret` and `node_key_secret` (worker) name
them, and they are read from the cluster's secrets directory here. The agent's own
configuration may say where programs are and where the runtime keeps its files:

    [runtimes.kubernetes]
    base_dir = "/var/lib/clusterplane/kubernetes"        # the default
    binaries = {kubelet = "/opt/kubernetes/bin/kubelet"}  # overrides the section's paths
    machine_record = "/var/lib/clusterplane/kubernetes-machine.json"  # the default: see
                                                      # kubernetes.host.MachineShare
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from clusterplane.agent.kubernetes.host import MACHINE_RECORD
from clusterplane.agent.kubernetes.runtime import KubernetesRuntime
from clusterplane.agent.kubernetes.section import PATH, _binaries
from clusterplane.agent.runtimes import RuntimeContext
from clusterplane.agent.section_fields import SectionError
from clusterplane.agent.slurm.host import LocalHost, SlurmHost

NAME = "kubernetes"
BASE_DIR = "/var/lib/clusterplane/kubernetes"
SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SECRETS = {
    "ca_cert_secret": "ca_cert",
    "ca_key_secret": "ca_key",
    "node_cert_secret": "node_cert",
    "node_key_secret": "node_key",
}


def _failed(message: str) -> dict[str, Any]:
    return {"ok": False, "phase": "failed", "message": message, "messages": [message]}


def _options(options: Mapping[str, Any]) -> tuple[str, dict[str, str], str]:
    unknown = set(options) - {"base_dir", "binaries", "machine_record"}
    if unknown:
        raise SectionError(
            f"unknown [runtimes.kubernetes] options in the agent's config: {sorted(unknown)}"
        )
    base = options.get("base_dir", BASE_DIR)
    if not isinstance(base, str) or not PATH.match(base):
        raise SectionError("[runtimes.kubernetes] base_dir must be an absolute path")
    machine_record = options.get("machine_record", MACHINE_RECORD)
    if not isinstance(machine_record, str) or not PATH.match(machine_record):
        raise SectionError("[runtimes.kubernetes] machine_record must be an absolute path")
    return base, _binaries(options.get("binaries", {})), machine_record


def local_host(ctx: RuntimeContext) -> SlurmHost:
    return LocalHost(ctx.state_dir, ctx.ops.root)


class KubernetesPlugin:
    """`host` makes the host the runtime acts on (tests: a namespaced host); `options`,
    when given, stand in for the agent configuration's `[runtimes.kubernetes]`."""

    def __init__(
        self,
        host: Callable[[RuntimeContext], SlurmHost] = local_host,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.options = options
        self._runtimes: dict[tuple[str, str, str], KubernetesRuntime] = {}

    def _runtime(self, ctx: RuntimeContext) -> KubernetesRuntime:
        base, binaries, machine_record = _options(
            ctx.runtime_options.get(NAME, {}) if self.options is None else self.options
        )
        key = (str(ctx.state_dir), str(ctx.ops.root), base)
        runtime = self._runtimes.get(key)
        if runtime is None or (runtime.binaries, runtime.machine_record) != (
            binaries,
            machine_record,
        ):
            runtime = KubernetesRuntime(self.host(ctx), base, binaries, machine_record)
            self._runtimes[key] = runtime  # kept: it serves the device plugin between passes
        return runtime

    def converge(self, section: dict[str, Any], ctx: RuntimeContext) -> dict[str, Any]:
        raw = dict(section)
        for reference, field in SECRETS.items():
            secret = raw.pop(reference, None)
            if secret is None:
                continue
            if not isinstance(secret, str) or not SECRET_NAME.match(secret):
                return _failed(f"{reference} must name a secret of the assignment")
            value = ctx.ops.read(f"{ctx.secrets_dir}/{secret}")
            if value is None:
                return _failed(f"the assignment has no secret '{secret}'")
            raw[field] = value
        try:
            runtime = self._runtime(ctx)
        except SectionError as exc:
            return _failed(str(exc))
        return runtime.converge(raw)

    def teardown(self, ctx: RuntimeContext) -> None:
        self._runtime(ctx).teardown()

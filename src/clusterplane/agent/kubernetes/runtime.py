"""The Kubernetes runtime of the node agent: a cluster's control plane or a worker node.

`KubernetesRuntime(host, base, binaries).converge(section)` brings a host to its
`kubernetes` section (`section` documents the schema), idempotently: the
control-plane role runs etcd, the API server, the scheduler and the controller-manager
(`control`), the worker role containerd, the kubelet and the GPU device plugin
(`worker`); a daemon that died is started again at the next pass. Everything
lives under `base` (a host path); programs are the section's `binaries`, overridden by
the agent's own (`binaries`), else found on the host's PATH. `machine_record` is the
file the runtimes of one kernel share (`kubernetes.host.MachineShare`): the default on a
real host, one path for every namespaced test host of a machine. It returns a report: `ok`,
`phase` ("ready", "starting", "waiting" for a role, or "failed"), `message`, `messages`;
the control plane adds
`nodes` (each Node's state), `node_conditions` (health's second signal: Ready and a fresh
Lease) and `drains` (the cordoned nodes' drains); a worker adds `daemon_health`, whether
its kubelet answers. A section for another cluster or role
tears the host down first. `teardown()` leaves nothing: no process, container, mount,
network namespace, cgroup, route, certificate or key, and the sysctls as they were.

What the runtime did is recorded in `host.state_dir/kubernetes.json`, so `teardown()`
works after an agent restart and without the section.
"""

from __future__ import annotations

from typing import Any

from clusterplane.agent.kubernetes import config, nodes
from clusterplane.agent.kubernetes.api import ApiError
from clusterplane.agent.kubernetes.control import ControlPlane
from clusterplane.agent.kubernetes.daemons import Record
from clusterplane.agent.kubernetes.host import MACHINE_RECORD, HostError, HostKit
from clusterplane.agent.kubernetes.processes import ProcessError
from clusterplane.agent.kubernetes.section import KubernetesSection, parse_section
from clusterplane.agent.kubernetes.worker import Worker
from clusterplane.agent.section_fields import SectionError
from clusterplane.agent.slurm.host import SlurmHost as Host

RECORD = "kubernetes.json"
PROGRAMS = {
    "control_plane": ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager"),
    "worker": ("containerd", "ctr", "kubelet"),
}


class KubernetesRuntime:
    def __init__(
        self,
        host: Host,
        base: str,
        binaries: dict[str, str] | None = None,
        machine_record: str = MACHINE_RECORD,
    ):
        self.host = host
        self.base = base.rstrip("/")
        self.binaries = dict(binaries or {})
        self.machine_record = machine_record
        self._role: ControlPlane | Worker | None = None
        self._record: Record | None = None
        self._versions: dict[str, str] = {}

    @property
    def record(self) -> Record:
        if self._record is None:
            self._record = Record(self.host.state_dir / RECORD)
        return self._record

    def converge(self, raw: dict[str, Any]) -> dict[str, Any]:
        if "role" not in raw:  # a peer's change (its routes) reached this host first
            return _report("waiting", ["no role for this host yet"])
        try:
            section = parse_section(raw)
        except SectionError as exc:
            return _report("failed", [str(exc)])
        messages: list[str] = []
        record = self.record
        if record and (record.get("base"), record.get("identity")) != (
            self.base,
            list(section.identity),
        ):
            messages.append(f"leaving cluster {record.get('identity', ['?'])[0]}")
            self.teardown()
        record.data.update(
            {"base": self.base, "identity": list(section.identity), "role": section.role}
        )
        record.save()
        try:
            programs = self._programs(section)
            role = self._role_for(record, section, programs)
            phase = role.converge(section, messages)
        except (HostError, ProcessError, ApiError, OSError) as exc:
            return _report("failed", [*messages, str(exc)])
        report = _report(phase, messages)
        if isinstance(role, Worker) and role.daemon_health is not None:
            report["daemon_health"] = role.daemon_health
        if isinstance(role, ControlPlane) and phase == "ready":
            report.update(self._cluster_view(role, section, messages))
            report["message"] = "; ".join(messages[-3:])
        return report

    def _programs(self, section: KubernetesSection) -> dict[str, str]:
        kit = HostKit(self.host)
        configured = {**section.binaries, **self.binaries}
        names = PROGRAMS[section.role]
        programs = {name: kit.program(name, configured.get(name)) for name in names}
        for name, path in programs.items():
            if section.version and name.startswith("kube"):
                self._check_version(path, section.version)
        return programs

    def _check_version(self, path: str, version: str) -> None:
        """`path --version` must name `version` (asked once per path)."""
        if path not in self._versions:
            answer = self.host.run([path, "--version"], timeout=30)
            self._versions[path] = (answer.stdout + answer.stderr).strip()[:200]
        reported = self._versions[path]
        if version not in reported.split():
            raise HostError(f"{path} reports {reported!r}, not Kubernetes {version}")

    def _role_for(
        self, record: Record, section: KubernetesSection, programs: dict[str, str]
    ) -> ControlPlane | Worker:
        role = section.role
        layout = config.Layout(self.base, section.node_name)
        wanted = ControlPlane if role == "control_plane" else Worker
        current = self._role
        if isinstance(current, wanted) and current.programs == programs:
            return current
        if wanted is Worker:
            self._role = Worker(self.host, layout, record, programs, self.machine_record)
        else:
            self._role = ControlPlane(self.host, layout, record, programs)
        if isinstance(current, Worker):
            current._stop_plugin()  # replaced: a new one serves the same socket
        return self._role

    def _cluster_view(
        self, control: ControlPlane, section: KubernetesSection, messages: list[str]
    ) -> dict[str, Any]:
        api = control.api(section)
        try:
            views = nodes.node_views(api, section.gpu_resource)
            drains = nodes.apply(api, section, views, messages)
            if any(m.startswith(("cordoned", "uncordoned", "deleted")) for m in messages):
                views = nodes.node_views(api, section.gpu_resource)
        except ApiError as exc:  # reported; the next pass looks again
            messages.append(f"no node view: {exc}")
            return {}
        finally:
            api.close()
        grace = section.node_grace_seconds
        return {
            "nodes": {name: view.report() for name, view in sorted(views.items())},
            "node_conditions": {
                name: nodes.condition(view, grace) for name, view in sorted(views.items())
            },
            "drains": drains,
        }

    def teardown(self) -> dict[str, Any]:
        record = self.record
        if not record:
            return _report("ready", ["nothing to tear down"])
        base = str(record.get("base") or self.base)
        role = record.get("role")
        identity = record.get("identity") or ["?", role, ""]
        layout = config.Layout(base, str(identity[2]))
        if role == "worker":
            worker = self._role if isinstance(self._role, Worker) else None
            worker = worker or Worker(self.host, layout, record, self._teardown_programs())
            worker.teardown()
        else:
            control = ControlPlane(self.host, layout, record, {})
            control.teardown()
        self._role = None
        kit = HostKit(self.host)
        kit.command(["rm", "-rf", "--one-file-system", base], f"remove {base}")
        record.clear()
        return _report("ready", [f"removed cluster {identity[0]}"])

    def _teardown_programs(self) -> dict[str, str]:
        kit = HostKit(self.host)
        try:
            return {"ctr": kit.program("ctr", self.binaries.get("ctr"))}
        except HostError:
            return {"ctr": "ctr"}  # containerd cannot be running either: nothing to list


def _report(phase: str, messages: list[str]) -> dict[str, Any]:
    return {
        "ok": phase != "failed",
        "phase": phase,
        "message": "; ".join(messages[-3:]),
        "messages": messages,
    }

"""Converge the host to an assignment, or return it clean: the agent's one verb.

`Node.apply(assignment)` runs each concern in order (host name; mounts, since homes may
live on a shared volume; users; SSH CA; secrets; flavour runtimes), saving what it
applied after each step, and answers the per-section results and the phase they add up
to: `ready` when every section succeeded, `failed` otherwise. An assignment for another
cluster first returns the host clean of the old one; an assignment with no cluster
returns it clean (`idle`): runtimes stopped first, then users, mounts, the SSH CA and
secrets removed, and the original host name restored. Every step is idempotent, so a
restarted agent re-applies the same generation safely.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterplane.domain.agent_protocol import Assignment, Inventory, SectionResult

from . import mounts, runtimes, secrets, sshd, users
from .applied import AppliedStore
from .hostops import HostOps

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    generation: int
    cluster_id: str | None
    phase: str
    sections: dict[str, SectionResult]


class Node:
    def __init__(
        self,
        ops: HostOps,
        state_dir: Path,
        *,
        shared_fs: str,
        sshd_reload: list[str],
        registry: runtimes.Registry,
        inventory: Inventory,
        runtime_options: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.ops = ops
        self.state_dir = state_dir
        self.shared_fs = shared_fs
        self.sshd_reload = sshd_reload
        self.registry = registry
        self.inventory = inventory
        self.runtime_options = dict(runtime_options or {})
        self.store = AppliedStore(state_dir)

    def _ctx(self, assignment: Assignment | None) -> runtimes.RuntimeContext:
        return runtimes.RuntimeContext(
            ops=self.ops,
            state_dir=self.state_dir,
            cluster_id=assignment.cluster_id if assignment else self.store.value.cluster_id,
            node=assignment.node if assignment else None,
            inventory=self.inventory,
            secrets_dir=secrets.DIRECTORY,
            runtime_options=self.runtime_options,
        )

    def apply(self, assignment: Assignment) -> Outcome:
        applied = self.store.value
        sections: dict[str, SectionResult] = {}
        if applied.cluster_id not in (None, assignment.cluster_id) or assignment.cluster_id is None:
            sections.update(self.clean())
        if assignment.cluster_id is None:
            applied.generation = assignment.generation
            self.store.save()
            phase = "idle" if all(r.ok for r in sections.values()) else "failed"
            return Outcome(assignment.generation, None, phase, sections)
        applied.cluster_id = assignment.cluster_id
        self.store.save()
        steps: tuple[tuple[str, Callable[[Assignment], SectionResult]], ...] = (
            ("hostname", self._hostname),
            (
                "mounts",
                lambda a: mounts.converge_mounts(self.ops, applied, a.mounts, self.shared_fs),
            ),
            ("users", lambda a: users.converge_users(self.ops, applied, a.users)),
            (
                "ssh_ca",
                lambda a: sshd.converge_ssh_ca(
                    self.ops, applied, a.ssh_user_ca_keys, self.sshd_reload
                ),
            ),
            ("secrets", lambda a: secrets.converge_secrets(self.ops, applied, a.secrets)),
        )
        for name, step in steps:
            sections[name] = self._guarded(name, step, assignment)
            self.store.save()
        sections.update(
            runtimes.converge_runtimes(
                self.registry, applied, assignment.runtimes, self._ctx(assignment)
            )
        )
        applied.generation = assignment.generation
        self.store.save()
        phase = "ready" if all(r.ok for r in sections.values()) else "failed"
        return Outcome(assignment.generation, assignment.cluster_id, phase, sections)

    def _guarded(
        self, name: str, step: Callable[[Assignment], SectionResult], assignment: Assignment
    ) -> SectionResult:
        try:
            return step(assignment)
        except OSError as exc:
            log.warning("%s failed: %s", name, exc)
            return SectionResult(ok=False, message=str(exc)[:2000])

    def _hostname(self, assignment: Assignment) -> SectionResult:
        applied = self.store.value
        if assignment.node is None:
            return SectionResult(ok=True, message="no node name assigned")
        if applied.original_hostname is None:
            current = self.ops.read("/etc/hostname")
            applied.original_hostname = (current or self.inventory.hostname).strip()
        changed = self.ops.set_hostname(assignment.node.hostname)
        applied.hostname = assignment.node.hostname
        return SectionResult(ok=True, details={"hostname": applied.hostname, "changed": changed})

    def clean(self) -> dict[str, SectionResult]:
        """Return the host clean of the current cluster: nothing of it left behind."""
        applied = self.store.value
        results: dict[str, SectionResult] = {}
        ctx = self._ctx(None)
        for name in list(applied.runtimes):
            results[f"runtime:{name}"] = runtimes.teardown_runtime(
                self.registry, applied, name, ctx
            )
            self.store.save()
        cleaners: tuple[tuple[str, Callable[[], SectionResult]], ...] = (
            ("users", lambda: users.converge_users(self.ops, applied, [])),
            ("mounts", lambda: mounts.remove_mounts(self.ops, applied)),
            ("ssh_ca", lambda: sshd.remove_ssh_ca(self.ops, applied, self.sshd_reload)),
            ("secrets", lambda: secrets.wipe_secrets(self.ops, applied)),
            ("hostname", self._restore_hostname),
        )
        for name, step in cleaners:
            try:
                results[name] = step()
            except OSError as exc:
                results[name] = SectionResult(ok=False, message=str(exc)[:2000])
            self.store.save()
        if all(r.ok for r in results.values()):
            applied.cluster_id = None
            self.store.save()
        return results

    def _restore_hostname(self) -> SectionResult:
        applied = self.store.value
        if applied.hostname is not None and applied.original_hostname:
            self.ops.set_hostname(applied.original_hostname)
        applied.hostname = None
        return SectionResult(ok=True)

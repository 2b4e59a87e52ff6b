"""Flavour runtimes: the daemons a cluster flavour runs on a node (slurmd, kubelet...).

An assignment's `runtimes` maps a section name ("slurm") to that flavour's opaque config.
A `Runtime` converges a host to its section and tears down what it started; runtimes are
registered by name (`register`), and `converge_runtimes` dispatches each section to its
runtime, tearing down runtimes whose section left the assignment. A section with no
runtime on this agent fails its result (the control plane sees why) without touching the
others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clusterplane.domain.agent_protocol import Inventory, NodeSpec, SectionResult

from .applied import Applied
from .hostops import HostOps


@dataclass(frozen=True)
class RuntimeContext:
    ops: HostOps
    state_dir: Path  # the runtime's own directory inside the agent's state directory
    cluster_id: str | None
    node: NodeSpec | None
    inventory: Inventory
    secrets_dir: str  # absolute path (inside ops.root) of the cluster's secrets
    # The agent configuration's `[runtimes.<name>]` tables: host-local options per runtime.
    runtime_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class Runtime(Protocol):
    def converge(self, section: dict[str, Any], ctx: RuntimeContext) -> dict[str, Any]:
        """Bring the host to `section`, idempotently; a report with `ok` and `message`."""
        ...

    def teardown(self, ctx: RuntimeContext) -> None:
        """Stop and remove everything this runtime started; succeeds when nothing is left."""
        ...


@dataclass
class Registry:
    factories: dict[str, Callable[[], Runtime]] = field(default_factory=dict)
    _instances: dict[str, Runtime] = field(default_factory=dict)

    def register(self, name: str, factory: Callable[[], Runtime]) -> None:
        self.factories[name] = factory

    def get(self, name: str) -> Runtime | None:
        if name not in self._instances and name in self.factories:
            self._instances[name] = self.factories[name]()
        return self._instances.get(name)


def _context(base: RuntimeContext, name: str) -> RuntimeContext:
    directory = base.state_dir / "runtimes" / name
    directory.mkdir(parents=True, exist_ok=True)
    return RuntimeContext(
        ops=base.ops,
        state_dir=directory,
        cluster_id=base.cluster_id,
        node=base.node,
        inventory=base.inventory,
        secrets_dir=base.secrets_dir,
        runtime_options=base.runtime_options,
    )


def converge_runtimes(
    registry: Registry,
    applied: Applied,
    sections: dict[str, dict[str, Any]],
    ctx: RuntimeContext,
) -> dict[str, SectionResult]:
    results: dict[str, SectionResult] = {}
    for name in [n for n in applied.runtimes if n not in sections]:
        results[f"runtime:{name}"] = teardown_runtime(registry, applied, name, ctx)
    for name, section in sorted(sections.items()):
        runtime = registry.get(name)
        if runtime is None:
            results[f"runtime:{name}"] = SectionResult(
                ok=False, message=f"this agent has no runtime for '{name}'"
            )
            continue
        if name not in applied.runtimes:
            applied.runtimes.append(name)
        try:
            report = runtime.converge(section, _context(ctx, name))
        except Exception as exc:  # a runtime's failure is reported, never fatal
            results[f"runtime:{name}"] = SectionResult(ok=False, message=str(exc)[:2000])
            continue
        results[f"runtime:{name}"] = SectionResult(
            ok=bool(report.get("ok", True)),
            message=str(report.get("message", ""))[:2000],
            details={k: v for k, v in report.items() if k not in ("ok", "message")},
        )
    return results


def teardown_runtime(
    registry: Registry, applied: Applied, name: str, ctx: RuntimeContext
) -> SectionResult:
    runtime = registry.get(name)
    if runtime is None:
        applied.runtimes.remove(name)
        return SectionResult(ok=True, message=f"no runtime '{name}' here; nothing to stop")
    try:
        runtime.teardown(_context(ctx, name))
    except Exception as exc:
        return SectionResult(ok=False, message=f"teardown failed: {str(exc)[:1900]}")
    applied.runtimes.remove(name)
    return SectionResult(ok=True, message="stopped")

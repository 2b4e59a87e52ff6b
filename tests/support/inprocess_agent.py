"""A node agent inside the test process, driven one round at a time.

The agent's real parts, against an in-process engine (`tests.support.engine`): its HTTP
client (`AgentClient`, over the test client's transport, every call signed), enrollment
with a join token, the convergence of a host (`agent.converge.Node` on a temporary root;
no kernel host name, and bind mounts only recorded, `MountLedger`, so nothing is mounted
in the test process's namespace) and the check runner with the commands given.
`round()` is what the daemon's loops do, once: pull the assignment, apply a new
generation (with `reconverge`, the current one again too, as the daemon does every
`converge_seconds`), report the status, run the checks the answer asks for and report
them. An agent may be given its host's inventory and its runtimes (`registry`). For
the contract suite and in-process cluster tests; `tests.support.agents` runs real agent
processes in namespaces instead.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clusterplane.agent.checks import CheckRunner
from clusterplane.agent.client import AgentClient
from clusterplane.agent.config import CheckCommand
from clusterplane.agent.converge import Node
from clusterplane.agent.hostops import HostOps
from clusterplane.agent.runtimes import Registry
from clusterplane.domain.agent_protocol import (
    NODE_PHASE_OF,
    GpuInfo,
    Inventory,
    StatusReport,
)
from tests.support.engine import Engine

MODEL = "NVIDIA H100 80GB HBM3"


class MountLedger(HostOps):
    """`HostOps` whose bind mounts are recorded (target -> source), not made."""

    def __init__(self, root: Path):
        super().__init__(root, set_kernel_hostname=False)
        self.mounts: dict[str, str] = {}

    def is_mounted(self, absolute: str) -> bool:
        return absolute in self.mounts

    def bind_mount(self, source: Path, absolute: str) -> bool:
        if absolute in self.mounts:
            return False
        self.makedirs(absolute)
        self.mounts[absolute] = str(source)
        return True

    def unmount(self, absolute: str) -> bool:
        return self.mounts.pop(absolute, None) is not None


def host_root(root: Path, name: str) -> Path:
    """A host's file system as the agent sees it: account files, host name."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc" / "hostname").write_text(f"{name}\n")
    return root


class InProcessAgent:
    def __init__(
        self,
        engine: Engine,
        base: Path,
        name: str,
        *,
        region: str = "test-1",
        checks: dict[str, list[str]] | None = None,
        shared: Path | None = None,
        inventory: Inventory | None = None,
        registry: Registry | None = None,
        reconverge: bool = False,
    ):
        """`shared`: the shared filesystem (else one of its own), at /shared in its root."""
        self.name = name
        self.dir = base / name
        self.root = host_root(self.dir / "root", name)
        state = self.dir / "state"
        state.mkdir(parents=True, exist_ok=True)
        token = engine.client.post(
            "/admin/v1/join-tokens", json={"region": region}, headers=engine.headers()
        ).json()["token"]
        # The test client's transport: the agent's own client reaches the in-process app.
        transport = engine.client._transport
        key = Ed25519PrivateKey.generate()
        self.client = AgentClient("http://testserver", key, transport=transport)
        self.inventory = inventory or Inventory(
            hostname=name,
            gpu_type="H100_SXM",
            gpus=[GpuInfo(index=i, model=MODEL) for i in range(8)],
            gpu_source="config",
            num_cpu_cores=64,
            memory_gib=512,
        )
        self.reconverge = reconverge
        self.host_id: str = self.client.enroll(token, self.inventory)["host_id"]
        self.ops = MountLedger(self.root)
        if shared is None:
            (self.root / "shared").mkdir()
        else:
            (self.root / "shared").symlink_to(shared)
        self.node = Node(
            self.ops,
            state,
            shared_fs="/shared",
            sshd_reload=[],
            registry=registry or Registry(),
            inventory=self.inventory,
        )
        commands = {k: CheckCommand(command=argv) for k, argv in (checks or {}).items()}
        self.checks = CheckRunner(state, commands, self.client.check_report)
        self.status = StatusReport(generation_applied=-1, phase="idle", inventory=self.inventory)
        self.round()

    def round(self) -> None:
        """Pull, apply what is new, report, run the checks asked for and report them."""
        assignment, _ = self.client.assignment(-1)
        if self.reconverge or assignment.generation != self.node.store.value.generation:
            outcome = self.node.apply(assignment)
            self.status = StatusReport(
                generation_applied=outcome.generation,
                cluster_id=outcome.cluster_id,
                phase=outcome.phase,  # type: ignore[arg-type]
                node_phase=NODE_PHASE_OF[outcome.phase],
                sections=outcome.sections,
            )
        self.checks.submit(self.client.report(self.status))
        while self.checks.step():
            pass

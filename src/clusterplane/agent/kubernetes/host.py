"""What the Kubernetes runtime does to its host besides running processes.

`HostKit(host)` writes files atomically with their mode (`write`, `changed` when the
content or mode differed), runs commands that must succeed (`command`), reads and writes
sysctls as the host's network namespace sees them (`sysctl`, `set_sysctls`), lists the
host's mounts (`mounts_under`) and finds a program (`program`: the configured path, or the
host's PATH). `MachineShare` records the machine-wide sysctls the kubelet rewrites at
start-up (they are not per namespace), and the machine paths the kubelet and CNI create,
before the first kubelet on the machine starts, in one locked file shared by every
runtime on the machine, and restores them when the last one leaves. On a real host one
runtime uses it; test hosts in namespaces share one kernel and name one file for all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clusterplane.agent.slurm.host import SlurmHost as Host

KUBELET_SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")
MACHINE_RECORD = "/var/lib/clusterplane/kubernetes-machine.json"
# Machine paths the kubelet (device plugins, pod logs) and CNI (result cache) use, outside
# any directory of the runtime's own; removed by the last runtime when it made them.
MACHINE_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/kubelet/device-plugins",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/var/lib/cni/results",
)


class HostError(RuntimeError):
    """A host command failed; the message says which and why."""


class HostKit:
    def __init__(self, host: Host):
        self.host = host

    def command(self, argv: list[str], what: str, timeout: float = 60) -> str:
        result = self.host.run(argv, timeout=timeout)
        if result.returncode:
            raise HostError(f"{what} failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return result.stdout

    def write(self, absolute: str, content: str, mode: int = 0o644) -> bool:
        """Write `content` (atomically); False when the file already held it, with `mode`."""
        target = self.host.path(absolute)
        data = content.encode()
        if (
            target.exists()
            and target.read_bytes() == data
            and target.stat().st_mode & 0o777 == mode
        ):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.new")
        scratch.unlink(missing_ok=True)
        scratch.touch(mode=0o600)
        scratch.write_bytes(data)
        scratch.chmod(mode)
        scratch.replace(target)
        return True

    def mkdir(self, absolute: str, mode: int = 0o755) -> None:
        self.host.path(absolute).mkdir(parents=True, exist_ok=True, mode=mode)

    def sysctl(self, name: str) -> str:
        return self.command(["sysctl", "-n", name], f"read {name}").strip()

    def set_sysctls(self, values: dict[str, str]) -> None:
        if values:
            pairs = [f"{name}={value}" for name, value in values.items()]
            self.command(["sysctl", "-qw", *pairs], "sysctl")

    def mounts_under(self, prefix: str) -> list[str]:
        """Mount points at or below `prefix` on the host, deepest first."""
        table = self.command(["cat", "/proc/self/mountinfo"], "read mounts")
        points = {line.split()[4] for line in table.splitlines() if len(line.split()) > 4}
        inside = [p for p in points if p == prefix or p.startswith(prefix.rstrip("/") + "/")]
        return sorted(inside, key=lambda p: (p.count("/"), p), reverse=True)

    def unmount(self, point: str) -> None:
        if self.host.run(["umount", point], timeout=30).returncode:
            self.host.run(["umount", "-l", point], timeout=30)

    def program(self, name: str, configured: str | None) -> str:
        if configured:
            if not self.host.path(configured).is_file():
                raise HostError(f"{name}: {configured} does not exist")
            return configured
        found = self.host.run(["sh", "-c", 'command -v "$1"', "sh", name], timeout=10)
        path = found.stdout.strip()
        if found.returncode or not path.startswith("/"):
            raise HostError(f"{name} is not installed on this host (and no path is configured)")
        return path


class MachineShare:
    """What the Kubernetes runtimes of one machine share: the kernel's sysctls the kubelet
    rewrites, and the machine paths the kubelet and CNI use that were not there before.
    The first holder records them, the last one restores them. Holders are kept with a
    witness file each (their runtime's record), so one that vanished without a teardown
    does not hold the machine for ever."""

    def __init__(self, kit: HostKit, record: str):
        self.kit = kit
        self.path = kit.host.path(record)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.path.read_text()) if self.path.exists() else {}
            yield state
            if state.get("holders"):
                self.path.write_text(json.dumps(state, sort_keys=True))
            else:
                self.path.unlink(missing_ok=True)
                lock_path.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # made here, unless something else is in it
                    self.path.parent.rmdir()

    def hold(self, holder: str, witness: Path) -> None:
        """Hold the machine for `holder` while `witness` (its runtime's record) exists: a
        holder whose witness is gone (a host that vanished without its teardown) no
        longer holds, and when none is left the recorded values are restored first."""
        with self._locked() as state:
            holders = self._live(state)
            if not holders and "sysctls" in state:
                self._restore(state)  # the last holders vanished: these are the originals
            if not holders:
                state["sysctls"] = {name: self.kit.sysctl(name) for name in KUBELET_SYSCTLS}
                host = self.kit.host
                state["made"] = [p for p in MACHINE_PATHS if not host.path(p).exists()]
            state["holders"] = {**holders, holder: str(witness)}

    def release(self, holder: str) -> None:
        if not self.path.exists():
            return
        with self._locked() as state:
            holders = self._live(state)
            holders.pop(holder, None)
            state["holders"] = holders
            if not holders:
                self._restore(state)

    @staticmethod
    def _live(state: dict[str, Any]) -> dict[str, str]:
        holders = state.get("holders")
        if not isinstance(holders, dict):
            return {}
        return {str(h): str(w) for h, w in holders.items() if Path(str(w)).exists()}

    def _restore(self, state: dict[str, Any]) -> None:
        self.kit.set_sysctls({str(k): str(v) for k, v in state.get("sysctls", {}).items()})
        for made in sorted(state.get("made", []), key=len, reverse=True):
            with contextlib.suppress(OSError):  # not empty: someone else's files
                self.kit.host.path(made).rmdir()

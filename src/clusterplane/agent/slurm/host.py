"""How the Slurm runtime reaches its host: files by path, commands, processes.

`SlurmHost` is the protocol; `LocalHost` is the real thing (this process runs on the host,
paths under `root`, commands run directly). Tests give the runtime a host in network, UTS
and mount namespaces instead (tests/support/hosts.py), so one test process can drive
several hosts. Process ids are the machine's: the runtime never enters a PID namespace.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class SlurmHost(Protocol):
    @property
    def state_dir(self) -> Path:
        """The runtime's own record directory, as this process reaches it."""
        ...

    def path(self, absolute: str) -> Path:
        """Where this process reaches the host's file `absolute`."""
        ...

    def run(
        self, argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` on the host (output captured, never raises on a non-zero exit)."""
        ...

    def processes(self) -> list[int]:
        """Every live process id on the host."""
        ...


@dataclass
class LocalHost:
    state_dir: Path
    root: Path = field(default_factory=lambda: Path("/"))

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def run(
        self, argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def processes(self) -> list[int]:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]

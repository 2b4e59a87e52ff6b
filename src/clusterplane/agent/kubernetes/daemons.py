"""The record of what the Kubernetes runtime did on its host, and its daemons by name.

`Record(path)` is a JSON object in the runtime's own directory (so teardown works after an
agent restart and without the section): the base directory, the cluster identity, the
daemons (`proc`, `set_proc`), and every change to undo (mounts, mount points made,
routes, cgroups, sysctls). `Daemons(host, record, log_dir)` keeps named daemons running:
`ensure(name, argv, env)` starts one that is not running or whose command line changed
(a new argv restarts it) and says whether it started it; `stop(*names)` stops them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clusterplane.agent.kubernetes import processes
from clusterplane.agent.kubernetes.processes import Proc
from clusterplane.agent.slurm.host import SlurmHost as Host


class Record:
    def __init__(self, path: Path):
        self.path = path
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}

    def __bool__(self) -> bool:
        return bool(self.data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def list(self, key: str) -> list[Any]:
        value = self.data.setdefault(key, [])
        assert isinstance(value, list)
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.data.setdefault(key, {})
        assert isinstance(value, dict)
        return value

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_name(f".{self.path.name}.new")
        scratch.write_text(json.dumps(self.data, sort_keys=True))
        scratch.replace(self.path)

    def clear(self) -> None:
        self.data = {}
        self.path.unlink(missing_ok=True)


class Daemons:
    def __init__(self, host: Host, record: Record, log_dir: str):
        self.host = host
        self.record = record
        self.log_dir = log_dir

    def proc(self, name: str) -> Proc | None:
        return Proc.from_record(self.record.mapping("procs").get(name))

    def running(self, name: str) -> bool:
        return processes.alive(self.host, self.proc(name))

    def ensure(self, name: str, argv: list[str], env: Mapping[str, str]) -> bool:
        digest = hashlib.sha256(json.dumps([argv, dict(env)]).encode()).hexdigest()[:16]
        entry = self.record.mapping("procs").get(name) or {}
        if self.running(name) and entry.get("argv") == digest:
            return False
        self.stop(name)
        proc = processes.start(self.host, argv, f"{self.log_dir}/{name}.log", env)
        self.record.mapping("procs")[name] = {**proc.as_record(), "argv": digest}
        self.record.save()
        return True

    def stop(self, *names: str) -> None:
        for name in names:
            proc = self.proc(name)
            if proc is not None:
                processes.stop(self.host, [proc], name)
            self.record.mapping("procs").pop(name, None)
        self.record.save()

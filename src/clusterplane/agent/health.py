"""The agent's health collection: kernel-log XIDs and NVML signals, each reported once.

`HealthCollector.collect()` gathers new signals from the kernel log and NVML; after the
server accepted them, `commit()` persists the cursors (`health.json` in the state dir).
An agent that dies between the server's answer and the cursor write sends those signals
again after its restart, under the same keys, and the server takes each key once
(`services.agents.agent_health`): every signal is one health event across restarts.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from clusterplane.domain.agent_protocol import AgentHealthEvent, GpuInfo

from .config import HealthConfig
from .identity import read_json, write_json
from .kmsg import KernelLog
from .nvml import NvmlWatch

FILE = "health.json"
log_module = logging.getLogger(__name__)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


class HealthCollector:
    def __init__(self, state_dir: Path, config: HealthConfig, *, nvml: Any | None):
        self.path = state_dir / FILE
        self.saved: dict[str, Any] = read_json(self.path) or {}
        self.config = config
        self.nvml = nvml
        self.boot = boot_id()
        self._pending: dict[str, Any] | None = None
        self._kmsg_warned = False
        self.watch = NvmlWatch({}, xids=config.xid_source == "nvml")

    def collect(self, gpus: list[GpuInfo]) -> list[AgentHealthEvent]:
        state = copy.deepcopy(self.saved)
        log = KernelLog(self.config.kernel_log, state.get("kmsg", {}), boot_id=self.boot)
        try:
            events, state["kmsg"] = log.read(gpus)
        except OSError as exc:  # e.g. /dev/kmsg not readable: say so once, go on with NVML
            if not self._kmsg_warned:
                log_module.warning("cannot read %s: %s", self.config.kernel_log, exc)
                self._kmsg_warned = True
            events = []
        if self.nvml is not None:
            self.watch.state = state.setdefault("nvml", {})
            events += self.watch.poll(self.nvml, boot_id=self.boot)
        self._pending = state
        return events

    def commit(self) -> None:
        if self._pending is not None:
            self.saved = self._pending
            write_json(self.path, self.saved)
            self._pending = None

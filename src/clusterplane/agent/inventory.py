"""What this host has: GPUs (NVML, else the config), CPUs, memory, IB HCAs, labels.

GPUs come from NVML when a driver answers (or `gpu.source = "nvml"`); otherwise from the
config's model, count and device paths, each of which must exist as a character device
(the test hosts make fake /dev/nvidiaN with mknod). CPUs and memory come from the OS
unless the config overrides them; IB HCAs are the entries of /sys/class/infiniband.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any

from clusterplane.domain.agent_protocol import GpuInfo, Inventory, gpu_type_for_model

from . import nvml as nvml_module
from .config import AgentConfig


class InventoryError(Exception):
    pass


def config_gpus(config: AgentConfig) -> list[GpuInfo]:
    gpu = config.gpu
    devices = gpu.devices or [f"/dev/nvidia{i}" for i in range(gpu.count)]
    if gpu.count and len(devices) != gpu.count:
        raise InventoryError(f"gpu.count is {gpu.count} but {len(devices)} devices are listed")
    found = []
    for index, device in enumerate(devices):
        try:
            is_char = stat.S_ISCHR(os.stat(device).st_mode)
        except FileNotFoundError:
            is_char = False
        if not is_char:
            raise InventoryError(f"GPU device {device} is not a character device")
        pci = gpu.pci_bus_ids[index] if index < len(gpu.pci_bus_ids) else None
        found.append(
            GpuInfo(
                index=index,
                model=gpu.model,
                memory_mib=gpu.memory_mib,
                pci_bus_id=pci,
                device_path=device,
            )
        )
    return found


def memory_gib(meminfo: str) -> float:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / (1024 * 1024), 1)
    raise InventoryError("no MemTotal in /proc/meminfo")


def ib_hcas(sysfs: Path) -> tuple[list[str], str]:
    if not sysfs.is_dir():
        return [], ""
    names = sorted(p.name for p in sysfs.iterdir())
    kind = ""
    for name in names:
        board = sysfs / name / "board_id"
        if board.exists():
            kind = board.read_text().strip()
            break
    return names, kind


def collect(config: AgentConfig, *, nvml: Any | None = None) -> Inventory:
    """The host's inventory; `nvml` is an initialised NVML module, or None for none."""
    source = config.gpu.source
    if source == "nvml" and nvml is None:
        raise InventoryError("gpu.source is nvml but NVML did not answer")
    if nvml is not None and source != "config":
        gpus = nvml_module.gpus(nvml)
        driver, cuda = nvml_module.versions(nvml)
        gpu_source = "nvml"
    else:
        gpus, driver, cuda = config_gpus(config), None, None
        gpu_source = "config" if gpus else "none"
    model = gpus[0].model if gpus else ""
    gpu_type = config.gpu.gpu_type or (gpu_type_for_model(model) if gpus else None)
    hcas, hca_type = ib_hcas(Path(config.infiniband_sysfs))
    return Inventory(
        hostname=config.hostname or socket.gethostname(),
        gpu_type=gpu_type,
        gpus=gpus,
        gpu_source=gpu_source,
        driver_version=driver,
        cuda_version=cuda,
        num_cpu_cores=config.num_cpu_cores or os.cpu_count() or 0,
        memory_gib=config.memory_gib or memory_gib(Path("/proc/meminfo").read_text()),
        ib_hcas=hcas,
        ib_hca_type=hca_type,
        labels=config.labels,
        ip_address=config.ip_address,
    )

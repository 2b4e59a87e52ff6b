"""Host inventory without NVML: config GPUs on character devices, /proc and /sys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clusterplane.agent.config import AgentConfig, GpuConfig
from clusterplane.agent.inventory import (
    InventoryError,
    collect,
    config_gpus,
    ib_hcas,
    memory_gib,
)
from clusterplane.domain.agent_protocol import gpu_type_for_model


def fake_gpu_devices(directory: Path, count: int) -> list[str]:
    """Character devices like /dev/nvidiaN (major 195); needs root (mknod)."""
    paths = []
    for index in range(count):
        path = directory / f"nvidia{index}"
        try:
            os.mknod(path, 0o666 | 0o020000, os.makedev(195, index))
        except PermissionError:
            pytest.skip("making character devices needs root")
        paths.append(str(path))
    return paths


def test_config_gpus_are_the_listed_character_devices(tmp_path: Path):
    devices = fake_gpu_devices(tmp_path, 2)
    config = AgentConfig(
        hostname="h",
        num_cpu_cores=4,
        memory_gib=8,
        gpu=GpuConfig(
            model="NVIDIA H100 80GB HBM3",
            count=2,
            devices=devices,
            pci_bus_ids=["0000:18:00.0", "0000:2a:00.0"],
        ),
    )
    inventory = collect(config, nvml=None)
    assert inventory.gpu_source == "config"
    assert inventory.gpu_type == "H100_SXM"
    assert [(g.index, g.device_path, g.pci_bus_id) for g in inventory.gpus] == [
        (0, devices[0], "0000:18:00.0"),
        (1, devices[1], "0000:2a:00.0"),
    ]


def test_a_gpu_device_that_is_a_plain_file_or_missing_is_refused(tmp_path: Path):
    (tmp_path / "nvidia0").write_text("")
    for devices in ([str(tmp_path / "nvidia0")], [str(tmp_path / "nvidia9")]):
        with pytest.raises(InventoryError, match="not a character device"):
            config_gpus(AgentConfig(gpu=GpuConfig(model="m", count=1, devices=devices)))
    with pytest.raises(InventoryError, match="count is 2"):
        config_gpus(AgentConfig(gpu=GpuConfig(model="m", count=2, devices=["/dev/null"])))


def test_memory_comes_from_meminfo_in_gib():
    assert memory_gib("MemFree: 1 kB\nMemTotal:       2113245184 kB\n") == 2015.3
    with pytest.raises(InventoryError):
        memory_gib("MemFree: 1 kB\n")


def test_infiniband_hcas_are_the_sysfs_entries_with_their_board(tmp_path: Path):
    assert ib_hcas(tmp_path / "absent") == ([], "")
    for name in ("mlx5_1", "mlx5_0"):
        (tmp_path / name).mkdir()
    (tmp_path / "mlx5_0" / "board_id").write_text("MT_0000000838\n")
    assert ib_hcas(tmp_path) == (["mlx5_0", "mlx5_1"], "MT_0000000838")


def test_nvml_product_names_map_to_the_fleets_gpu_types():
    assert gpu_type_for_model("NVIDIA H100 80GB HBM3") == "H100_SXM"
    assert gpu_type_for_model("NVIDIA H200") == "H200_SXM"
    assert gpu_type_for_model("NVIDIA GB200") == "GB200_SXM"
    assert gpu_type_for_model("NVIDIA B200") == "B200_SXM"
    assert gpu_type_for_model("NVIDIA L40S") == "L40_PCIE"
    assert gpu_type_for_model("NVIDIA RTX 6000 Ada Generation") == "RTX_6000_PCI"
    assert gpu_type_for_model("Tesla T4") is None


def test_a_host_without_gpus_has_none_and_labels_from_its_config():
    config = AgentConfig(hostname="cpu1", labels={"rack": "r7"}, num_cpu_cores=2, memory_gib=4)
    inventory = collect(config, nvml=None)
    assert (inventory.gpus, inventory.gpu_type, inventory.gpu_source) == ([], None, "none")
    assert inventory.labels == {"rack": "r7"} and inventory.num_cpu_cores == 2

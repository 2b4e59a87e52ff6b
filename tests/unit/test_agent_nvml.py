"""The agent's NVML path against a fake pynvml with nvidia-ml-py's API."""

from __future__ import annotations

import pynvml
import pytest

from clusterplane.agent import nvml
from clusterplane.agent.config import AgentConfig, GpuConfig
from clusterplane.agent.inventory import collect
from tests.support import fake_nvml
from tests.support.fake_nvml import FakeNvml


def test_the_fake_uses_only_names_that_real_nvidia_ml_py_has():
    missing = [name for name in fake_nvml.api_names() if not hasattr(pynvml, name)]
    assert missing == []


def test_without_a_driver_nvml_loads_as_nothing():
    assert nvml.load() is None  # this machine has no NVIDIA driver: nvmlInit fails


def test_the_inventory_reads_model_count_uuids_memory_and_versions_from_nvml(
    monkeypatch: pytest.MonkeyPatch,
):
    fake = FakeNvml()
    fake_nvml.install(monkeypatch, fake)
    loaded = nvml.load()
    assert loaded is fake and fake.calls == ["nvmlInit"]
    inventory = collect(AgentConfig(hostname="h1", num_cpu_cores=8, memory_gib=64), nvml=loaded)
    assert inventory.gpu_source == "nvml"
    assert inventory.gpu_type == "H100_SXM"
    assert [g.index for g in inventory.gpus] == list(range(8))
    assert inventory.gpus[0].model == "NVIDIA H100 80GB HBM3"
    assert inventory.gpus[3].uuid == fake_nvml.UUIDS[3]
    assert inventory.gpus[0].memory_mib == 81559
    assert inventory.gpus[7].pci_bus_id == "00000000:DB:00.0"
    assert inventory.gpus[2].device_path == "/dev/nvidia2"
    assert (inventory.driver_version, inventory.cuda_version) == ("550.54.15", "12.4")


def test_a_config_that_forces_config_gpus_ignores_nvml(tmp_path):
    config = AgentConfig(
        hostname="h1", num_cpu_cores=1, memory_gib=1, gpu=GpuConfig(source="config")
    )
    inventory = collect(config, nvml=FakeNvml())
    assert inventory.gpus == [] and inventory.gpu_source == "none"


def _poll(watch: nvml.NvmlWatch, fake: FakeNvml) -> list[tuple[str, int | None, int | None]]:
    return [(e.kind, e.gpu_index, e.xid_code) for e in watch.poll(fake, boot_id="b1")]


def test_a_healthy_host_reports_nothing_and_each_new_fault_once():
    fake = FakeNvml()
    watch = nvml.NvmlWatch({}, xids=False)
    assert _poll(watch, fake) == []
    fake.gpus[1].ecc_uncorrected = 2
    fake.gpus[2].retired_dbe = 1
    fake.gpus[3].remap_failed = True
    fake.gpus[4].throttle = pynvml.nvmlClocksThrottleReasonHwThermalSlowdown
    fake.gpus[5].throttle = pynvml.nvmlClocksThrottleReasonHwPowerBrakeSlowdown
    fake.gpus[6].links_up[3] = False
    fake.gpus[0].link_errors[1] = 7
    assert sorted(_poll(watch, fake)) == sorted(
        [
            ("ecc", 1, None),
            ("row_remap", 2, None),
            ("row_remap", 3, None),
            ("thermal", 4, None),
            ("thermal", 5, None),
            ("nvlink", 6, None),
            ("nvlink", 0, None),
        ]
    )
    assert _poll(watch, fake) == []  # nothing new


def test_a_restarted_agent_with_its_saved_state_reports_nothing_twice():
    fake = FakeNvml()
    fake.gpus[1].ecc_uncorrected = 3
    state: dict[str, object] = {}
    first = nvml.NvmlWatch(state, xids=False)
    assert _poll(first, fake) == [("ecc", 1, None)]
    restarted = nvml.NvmlWatch(state, xids=False)
    assert _poll(restarted, fake) == []
    fake.gpus[1].ecc_uncorrected = 4
    assert _poll(restarted, fake) == [("ecc", 1, None)]


def test_a_gpu_lost_from_the_bus_is_reported_once_per_boot():
    fake = FakeNvml()
    watch = nvml.NvmlWatch({}, xids=False)
    _poll(watch, fake)
    fake.gpus[2].lost = True
    assert _poll(watch, fake) == [("fallen_off_bus", 2, None)]
    assert _poll(watch, fake) == []


def test_a_throttling_episode_is_one_event_and_a_new_episode_another():
    fake = FakeNvml()
    watch = nvml.NvmlWatch({}, xids=False)
    fake.gpus[0].throttle = pynvml.nvmlClocksThrottleReasonSwThermalSlowdown
    assert _poll(watch, fake) == [("thermal", 0, None)]
    assert _poll(watch, fake) == []
    fake.gpus[0].throttle = 0
    assert _poll(watch, fake) == []
    fake.gpus[0].throttle = pynvml.nvmlClocksThrottleReasonHwThermalSlowdown
    assert _poll(watch, fake) == [("thermal", 0, None)]


def test_xid_events_come_from_nvml_only_when_it_is_the_xid_source():
    fake = FakeNvml()
    fake.inject_xid(gpu=5, code=79, stamp=1001)
    assert _poll(nvml.NvmlWatch({}, xids=False), fake) == []
    assert _poll(nvml.NvmlWatch({}, xids=True), fake) == [("xid", 5, 79)]

"""A stand-in for `pynvml` (nvidia-ml-py) that answers from recorded NVML answers.

`FakeNvml` is a module object with nvidia-ml-py's function names, constants and exception
classes (the real ones, imported from pynvml, so `except nvml.NVMLError_GpuIsLost` works
as on a real host). Its answers have the types and shapes nvidia-ml-py returns, with the
values of an eight-GPU H100 80GB HBM3 host on driver 550.54.15 (CUDA 12.4): product name,
UUIDs, PCI bus ids and memory as NVML reports them there. A test changes a GPU's state
(`gpus[i]`: ECC counts, throttle reasons, NVLink state, lost) or queues XID events to play
a failure. Install it with
`install(monkeypatch)` to replace `pynvml` for the agent's lazy import.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import pynvml
import pytest

DRIVER = "550.54.15"
CUDA = 12040
NAME = "NVIDIA H100 80GB HBM3"
MEMORY_TOTAL = 85_520_809_984
BUS_IDS = [
    "00000000:18:00.0",
    "00000000:2A:00.0",
    "00000000:3A:00.0",
    "00000000:5D:00.0",
    "00000000:9A:00.0",
    "00000000:AB:00.0",
    "00000000:BA:00.0",
    "00000000:DB:00.0",
]
UUIDS = [f"GPU-5b6a8f1e-7d2c-4c3b-9e0a-1f2d3c4b5a{i:02d}" for i in range(8)]
NVLINKS = 18

_CONSTANTS = (
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED",
    "NVML_VOLATILE_ECC",
    "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR",
    "NVML_FEATURE_ENABLED",
    "NVML_FEATURE_DISABLED",
    "NVML_NVLINK_ERROR_DL_CRC_FLIT",
    "NVML_NVLINK_ERROR_DL_RECOVERY",
    "nvmlEventTypeXidCriticalError",
    "NVMLError",
    "NVMLError_GpuIsLost",
    "NVMLError_NotSupported",
    "NVMLError_Timeout",
    "NVMLError_InvalidArgument",
)


@dataclass
class _Memory:
    total: int
    free: int
    used: int


@dataclass
class _Pci:
    busId: str


@dataclass
class _EventData:
    device: int
    eventType: int
    eventData: int
    timeStamp: int


@dataclass
class GpuState:
    ecc_uncorrected: int = 0
    retired_dbe: int = 0
    remap_failed: bool = False
    throttle: int = 0
    links_up: list[bool] = field(default_factory=lambda: [True] * NVLINKS)
    link_errors: list[int] = field(default_factory=lambda: [0] * NVLINKS)
    lost: bool = False


class FakeNvml(types.ModuleType):
    def __init__(self, count: int = 8):
        super().__init__("pynvml")
        for name in _CONSTANTS:
            setattr(self, name, getattr(pynvml, name))
        self.gpus = [GpuState() for _ in range(count)]
        self.xids: list[_EventData] = []
        self.calls: list[str] = []

    def _error(self, code: int) -> Exception:
        error: Exception = pynvml.NVMLError(code)
        return error

    def _handle(self, handle: int) -> GpuState:
        gpu = self.gpus[handle]
        if gpu.lost:
            raise self._error(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu

    # recorded answers -----------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")

    def nvmlSystemGetDriverVersion(self) -> str:
        return DRIVER

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return CUDA

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < len(self.gpus):
            raise self._error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        self._handle(index)
        return index

    def nvmlDeviceGetIndex(self, handle: int) -> int:
        return handle

    def nvmlDeviceGetName(self, handle: int) -> str:
        self._handle(handle)
        return NAME

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return UUIDS[handle]

    def nvmlDeviceGetMinorNumber(self, handle: int) -> int:
        return handle

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:
        return _Memory(total=MEMORY_TOTAL, free=MEMORY_TOTAL - 4 * 2**20, used=4 * 2**20)

    def nvmlDeviceGetPciInfo(self, handle: int) -> _Pci:
        return _Pci(busId=BUS_IDS[handle])

    def nvmlDeviceGetTotalEccErrors(self, handle: int, kind: int, counter: int) -> int:
        assert kind == pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        return self._handle(handle).ecc_uncorrected

    def nvmlDeviceGetRetiredPages(self, handle: int, cause: int) -> list[int]:
        return [0x1000 * i for i in range(self._handle(handle).retired_dbe)]

    def nvmlDeviceGetRemappedRows(self, handle: int) -> tuple[int, int, int, int]:
        gpu = self._handle(handle)
        return (0, 1 if gpu.remap_failed else 0, 0, 1 if gpu.remap_failed else 0)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:
        return self._handle(handle).throttle

    def nvmlDeviceGetNvLinkState(self, handle: int, link: int) -> int:
        gpu = self._handle(handle)
        if link >= len(gpu.links_up):
            raise self._error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pynvml.NVML_FEATURE_ENABLED if gpu.links_up[link] else pynvml.NVML_FEATURE_DISABLED

    def nvmlDeviceGetNvLinkErrorCounter(self, handle: int, link: int, counter: int) -> int:
        errors = self._handle(handle).link_errors[link]
        return errors if counter == pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT else 0

    def nvmlEventSetCreate(self) -> str:
        return "event-set"

    def nvmlDeviceRegisterEvents(self, handle: int, types_: int, event_set: str) -> None:
        assert types_ == pynvml.nvmlEventTypeXidCriticalError

    def nvmlEventSetWait_v2(self, event_set: str, timeout_ms: int) -> _EventData:
        if not self.xids:
            raise self._error(pynvml.NVML_ERROR_TIMEOUT)
        return self.xids.pop(0)

    def inject_xid(self, gpu: int, code: int, stamp: int) -> None:
        self.xids.append(_EventData(gpu, pynvml.nvmlEventTypeXidCriticalError, code, stamp))


def api_names() -> list[str]:
    """The nvidia-ml-py names this fake stands in for (each must exist in real pynvml)."""
    return [name for name in vars(FakeNvml) if name.startswith("nvml")] + list(_CONSTANTS)


def install(monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake)

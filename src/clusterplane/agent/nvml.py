"""NVIDIA GPUs through NVML (`nvidia-ml-py`, imported as `pynvml` only when used).

`load()` answers the module once `nvmlInit` succeeded, or None on a host without a
driver. `gpus(nvml)` is the inventory (model, UUID, memory, PCI bus id; driver and CUDA
version). `NvmlWatch.poll(nvml)` compares what NVML says now with what was last
reported (kept in the health cursor, so a restart reports nothing twice) and answers new
signals: XIDs (when NVML is the XID source), uncorrected ECC errors, retired pages and
row-remapping failures, thermal and power throttling, NVLink links going down or
counting errors, and a GPU lost from the bus. Every call takes the module as a parameter,
so tests hand in a fake with nvidia-ml-py's names, constants and exceptions.
"""

from __future__ import annotations

import importlib
from typing import Any

from clusterplane.domain.agent_protocol import AgentHealthEvent, GpuInfo

NVLINK_MAX_LINKS = 18
THERMAL_MASK = 0x20 | 0x40  # SW and HW thermal slowdown
POWER_MASK = 0x04 | 0x80  # SW power cap and HW power brake


def load() -> Any | None:
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return None
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no driver here
        return None
    return nvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def versions(nvml: Any) -> tuple[str, str]:
    driver = _text(nvml.nvmlSystemGetDriverVersion())
    cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
    return driver, f"{cuda // 1000}.{cuda % 1000 // 10}"


def gpus(nvml: Any) -> list[GpuInfo]:
    found = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        pci = nvml.nvmlDeviceGetPciInfo(handle)
        found.append(
            GpuInfo(
                index=index,
                model=_text(nvml.nvmlDeviceGetName(handle)),
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                memory_mib=int(memory.total) // (1024 * 1024),
                pci_bus_id=_text(pci.busId),
                device_path=f"/dev/nvidia{int(nvml.nvmlDeviceGetMinorNumber(handle))}",
            )
        )
    return found


def _event(
    key: str, kind: str, gpu: int, message: str, code: int | None = None
) -> AgentHealthEvent:
    return AgentHealthEvent(key=key, kind=kind, xid_code=code, gpu_index=gpu, message=message)


class NvmlWatch:
    """New NVML signals since the last report; `state` is persisted by the caller."""

    def __init__(self, state: dict[str, Any], *, xids: bool):
        self.state = state
        self.xids = xids
        self._event_set: Any = None

    def poll(self, nvml: Any, *, boot_id: str) -> list[AgentHealthEvent]:
        events: list[AgentHealthEvent] = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            seen = self.state.setdefault(str(index), {})
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                events += self._device(nvml, handle, index, seen)
            except nvml.NVMLError_GpuIsLost:
                if seen.get("lost") != boot_id:
                    seen["lost"] = boot_id
                    events.append(
                        _event(
                            f"nvml:{boot_id}:{index}:lost",
                            "fallen_off_bus",
                            index,
                            f"GPU {index} is lost from the bus (NVML)",
                        )
                    )
        if self.xids:
            events += self._xids(nvml)
        return events

    def _device(
        self, nvml: Any, handle: Any, index: int, seen: dict[str, Any]
    ) -> list[AgentHealthEvent]:
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        return [
            *self._memory(nvml, handle, index, uuid, seen),
            *self._throttle(nvml, handle, index, uuid, seen),
            *self._nvlink(nvml, handle, index, uuid, seen),
        ]

    def _memory(
        self, nvml: Any, handle: Any, index: int, uuid: str, seen: dict[str, Any]
    ) -> list[AgentHealthEvent]:
        """Uncorrected ECC errors, pages retired for them, and row-remapping failure."""
        events = []
        ecc = _counter(
            lambda: nvml.nvmlDeviceGetTotalEccErrors(
                handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
            ),
            nvml,
        )
        if ecc is not None and _grew(seen, "ecc", ecc):
            message = f"{ecc} uncorrected ECC errors on GPU {index}"
            events.append(_event(f"nvml:{uuid}:ecc:{ecc}", "ecc", index, message))
        retired = _counter(
            lambda: len(
                nvml.nvmlDeviceGetRetiredPages(
                    handle, nvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
                )
            ),
            nvml,
        )
        if retired is not None and _grew(seen, "retired", retired):
            message = f"{retired} pages retired for double-bit ECC on GPU {index}"
            events.append(_event(f"nvml:{uuid}:retired:{retired}", "row_remap", index, message))
        remap = _counter(lambda: nvml.nvmlDeviceGetRemappedRows(handle), nvml)
        if isinstance(remap, tuple | list) and len(remap) >= 4:
            failed = bool(remap[3])
            if failed and not seen.get("remap_failed"):
                message = f"row remapping failed on GPU {index}"
                events.append(_event(f"nvml:{uuid}:remap_failed", "row_remap", index, message))
            seen["remap_failed"] = failed
        return events

    def _throttle(
        self, nvml: Any, handle: Any, index: int, uuid: str, seen: dict[str, Any]
    ) -> list[AgentHealthEvent]:
        reasons = _counter(lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle), nvml)
        if reasons is None:
            return []
        before = int(seen.get("throttle", 0))
        seen["throttle"] = reasons
        events = []
        for mask, what in ((THERMAL_MASK, "thermal"), (POWER_MASK, "power")):
            if reasons & mask and not before & mask:
                episode = int(seen.get(f"{what}_episodes", 0)) + 1
                seen[f"{what}_episodes"] = episode
                events.append(
                    _event(
                        f"nvml:{uuid}:{what}:{episode}",
                        "thermal",
                        index,
                        f"GPU {index} clocks throttled ({what}, reasons {reasons:#x})",
                    )
                )
        return events

    def _nvlink(
        self, nvml: Any, handle: Any, index: int, uuid: str, seen: dict[str, Any]
    ) -> list[AgentHealthEvent]:
        """Links that went down, and links whose CRC or recovery error counts rose."""
        events = []
        links = seen.setdefault("links", {})
        for link in range(NVLINK_MAX_LINKS):
            try:
                state = int(nvml.nvmlDeviceGetNvLinkState(handle, link))
            except nvml.NVMLError:
                continue  # no such link on this GPU
            active = state == nvml.NVML_FEATURE_ENABLED
            errors = _counter(lambda link=link: _link_errors(nvml, handle, link), nvml)
            record = links.setdefault(str(link), {"up": active, "errors": errors or 0, "downs": 0})
            if record["up"] and not active:
                record["downs"] += 1
                key = f"nvml:{uuid}:nvlink{link}:down:{record['downs']}"
                events.append(_event(key, "nvlink", index, f"NVLink {link} of GPU {index} down"))
            elif errors is not None and errors > record["errors"]:
                key = f"nvml:{uuid}:nvlink{link}:errors:{errors}"
                message = f"NVLink {link} of GPU {index}: {errors} CRC/recovery errors"
                events.append(_event(key, "nvlink", index, message))
            record["up"] = active
            if errors is not None:
                record["errors"] = errors
        return events

    def _xids(self, nvml: Any) -> list[AgentHealthEvent]:
        if self._event_set is None:
            self._event_set = nvml.nvmlEventSetCreate()
            for index in range(int(nvml.nvmlDeviceGetCount())):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                nvml.nvmlDeviceRegisterEvents(
                    handle, nvml.nvmlEventTypeXidCriticalError, self._event_set
                )
        events: list[AgentHealthEvent] = []
        while True:
            try:
                data = nvml.nvmlEventSetWait_v2(self._event_set, 0)
            except nvml.NVMLError_Timeout:
                return events
            xid = int(data.eventData)
            uuid = _text(nvml.nvmlDeviceGetUUID(data.device))
            index = int(nvml.nvmlDeviceGetIndex(data.device))
            stamp = int(getattr(data, "timeStamp", 0))
            events.append(
                _event(
                    f"nvml:{uuid}:xid:{xid}:{stamp}",
                    "xid",
                    index,
                    f"Xid {xid} on GPU {index} (NVML)",
                    code=xid,
                )
            )


def _link_errors(nvml: Any, handle: Any, link: int) -> int:
    counters = (nvml.NVML_NVLINK_ERROR_DL_CRC_FLIT, nvml.NVML_NVLINK_ERROR_DL_RECOVERY)
    return sum(int(nvml.nvmlDeviceGetNvLinkErrorCounter(handle, link, c)) for c in counters)


def _counter(read: Any, nvml: Any) -> Any:
    """What `read()` answers, or None where this GPU does not support it."""
    try:
        return read()
    except nvml.NVMLError_NotSupported:
        return None


def _grew(seen: dict[str, Any], name: str, value: int) -> bool:
    """Whether a counter rose since last time (a reset after a driver reload is no event)."""
    before = seen.get(name)
    seen[name] = value
    return (before is not None and value > before) or (before is None and value > 0)

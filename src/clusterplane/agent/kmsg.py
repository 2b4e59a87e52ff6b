"""`NVRM: Xid` lines of the kernel log, read once each across agent restarts.

The log is /dev/kmsg (one record per read: `prio,seq,usec,flags;text`) or a plain file
of lines (tests, or a host that forwards its kernel log to one). The cursor, persisted by
the caller with what it reported, is the boot id and last sequence number for /dev/kmsg,
or the file's inode, byte offset and a hash of its first bytes for a file; a new boot or a
replaced file (even one reusing the inode) starts over. An XID line names the GPU by PCI
address; `gpu_index_of` maps it through the inventory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from clusterplane.domain.agent_protocol import AgentHealthEvent, GpuInfo

HEAD_BYTES = 256  # a file whose first bytes changed was replaced, even on a reused inode
XID = re.compile(r"NVRM: Xid \(PCI:([0-9a-fA-F:.]+)\): (\d+),?\s*(.*)$")


@dataclass(frozen=True)
class XidLine:
    pci: str
    code: int
    detail: str


def parse_xid(text: str) -> XidLine | None:
    match = XID.search(text)
    if match is None:
        return None
    return XidLine(pci=match.group(1).lower(), code=int(match.group(2)), detail=match.group(3))


def _pci_key(address: str) -> tuple[int, int, int]:
    """(domain, bus, device) of "0000:3b:00" (kernel) or "00000000:3B:00.0" (NVML)."""
    parts = address.lower().split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    if len(parts) != 3:
        raise ValueError(f"not a PCI address: {address}")
    domain, bus, device = parts[-3], parts[-2], parts[-1].split(".")[0]
    return int(domain, 16), int(bus, 16), int(device, 16)


def gpu_index_of(pci: str, gpus: list[GpuInfo]) -> int | None:
    try:
        wanted = _pci_key(pci)
    except ValueError:
        return None
    for gpu in gpus:
        if gpu.pci_bus_id:
            try:
                if _pci_key(gpu.pci_bus_id) == wanted:
                    return gpu.index
            except ValueError:
                continue
    return None


def parse_record(record: str) -> tuple[int, str] | None:
    """(sequence, text) of one /dev/kmsg record."""
    header, sep, text = record.partition(";")
    fields = header.split(",")
    if not sep or len(fields) < 3 or not fields[1].isdigit():
        return None
    return int(fields[1]), text.split("\n", 1)[0]


class KernelLog:
    def __init__(self, path: str, cursor: dict[str, Any], *, boot_id: str):
        self.path = path
        self.cursor = cursor
        self.boot_id = boot_id

    def read(self, gpus: list[GpuInfo]) -> tuple[list[AgentHealthEvent], dict[str, Any]]:
        """New XID events and the cursor after them (persist it once they are reported)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return [], self.cursor
        if stat.S_ISCHR(info.st_mode):
            lines, cursor = self._read_kmsg()
        else:
            lines, cursor = self._read_file(info)
        events = []
        for key, text in lines:
            xid = parse_xid(text)
            if xid is None:
                continue
            events.append(
                AgentHealthEvent(
                    key=key,
                    kind="xid",
                    xid_code=xid.code,
                    gpu_index=gpu_index_of(xid.pci, gpus),
                    message=text.strip()[:2000],
                )
            )
        return events, cursor

    def _read_kmsg(self) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        after = self.cursor.get("seq", -1) if self.cursor.get("boot") == self.boot_id else -1
        lines: list[tuple[str, str]] = []
        last = after
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            while True:
                try:
                    record = os.read(fd, 8192).decode(errors="replace")
                except OSError as exc:
                    if exc.errno == errno.EPIPE:  # overwritten records: skip on
                        continue
                    if exc.errno == errno.EAGAIN:
                        break
                    raise
                parsed = parse_record(record)
                if parsed is None or parsed[0] <= after:
                    continue
                last = parsed[0]
                lines.append((f"kmsg:{self.boot_id}:{last}", parsed[1]))
        finally:
            os.close(fd)
        return lines, {"boot": self.boot_id, "seq": last}

    def _read_file(self, info: os.stat_result) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        offset = int(self.cursor.get("offset", 0))
        with open(self.path, "rb") as log:
            known = min(offset, HEAD_BYTES)
            same = (
                self.cursor.get("inode") == info.st_ino
                and offset <= info.st_size
                and self.cursor.get("head") == _digest(log.read(known))
            )
            if not same:
                offset = 0
            lines: list[tuple[str, str]] = []
            log.seek(offset)
            while True:
                line = log.readline()
                if not line.endswith(b"\n"):
                    break  # a partial line is read once it is complete
                lines.append((f"file:{info.st_ino}:{offset}", line.decode(errors="replace")))
                offset += len(line)
            log.seek(0)
            head = _digest(log.read(min(offset, HEAD_BYTES)))
        return lines, {"inode": info.st_ino, "offset": offset, "head": head}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

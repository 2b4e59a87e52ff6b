"""Kernel-log XIDs: parsing lines and /dev/kmsg records, and reading each line once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clusterplane.agent import kmsg
from clusterplane.domain.agent_protocol import GpuInfo

GPUS = [
    GpuInfo(index=0, model="m", pci_bus_id="00000000:18:00.0"),
    GpuInfo(index=1, model="m", pci_bus_id="00000000:3B:00.0"),
]


def test_an_nvrm_xid_line_gives_its_code_and_pci_address():
    line = (
        "[ 1234.5678] NVRM: Xid (PCI:0000:3b:00): 79, pid=2511, name=python, "
        "GPU has fallen off the bus."
    )
    parsed = kmsg.parse_xid(line)
    assert parsed is not None
    assert (parsed.pci, parsed.code) == ("0000:3b:00", 79)
    assert parsed.detail.startswith("pid=2511")


def test_lines_that_are_not_xids_are_ignored():
    assert kmsg.parse_xid("NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.15") is None
    assert kmsg.parse_xid("usb 1-1: new high-speed USB device") is None


def test_the_kernels_pci_address_maps_to_nvmls_gpu_index():
    assert kmsg.gpu_index_of("0000:3b:00", GPUS) == 1
    assert kmsg.gpu_index_of("0000:18:00", GPUS) == 0
    assert kmsg.gpu_index_of("0000:99:00", GPUS) is None
    assert kmsg.gpu_index_of("garbage", GPUS) is None


def test_a_kmsg_record_gives_its_sequence_number_and_text():
    assert kmsg.parse_record("4,1203,73881000,-;NVRM: Xid (PCI:0000:18:00): 48, x\n") == (
        1203,
        "NVRM: Xid (PCI:0000:18:00): 48, x",
    )
    assert kmsg.parse_record("no header here") is None


def test_a_log_file_is_read_once_across_restarts_and_partial_lines_wait(tmp_path: Path):
    path = tmp_path / "kern.log"
    path.write_text(
        "boot\nNVRM: Xid (PCI:0000:18:00): 48, pid=1, DBE\nNVRM: Xid (PCI:0000:3b:00): 79"
    )
    log = kmsg.KernelLog(str(path), {}, boot_id="b")
    events, cursor = log.read(GPUS)
    assert [(e.xid_code, e.gpu_index) for e in events] == [(48, 0)]
    again, cursor = kmsg.KernelLog(str(path), cursor, boot_id="b").read(GPUS)
    assert again == []
    with path.open("a") as out:
        out.write(", pid=2, off the bus\n")
    events, cursor = kmsg.KernelLog(str(path), cursor, boot_id="b").read(GPUS)
    assert [(e.xid_code, e.gpu_index) for e in events] == [(79, 1)]
    assert len({e.key for e in events}) == 1


def test_a_replaced_log_file_is_read_from_its_start(tmp_path: Path):
    path = tmp_path / "kern.log"
    path.write_text("NVRM: Xid (PCI:0000:18:00): 48, a\n")
    _, cursor = kmsg.KernelLog(str(path), {}, boot_id="b").read(GPUS)
    path.unlink()
    path.write_text("NVRM: Xid (PCI:0000:18:00): 13, b\n")
    events, _ = kmsg.KernelLog(str(path), cursor, boot_id="b").read(GPUS)
    assert [e.xid_code for e in events] == [13]


def test_a_missing_log_reads_as_nothing(tmp_path: Path):
    events, cursor = kmsg.KernelLog(str(tmp_path / "none"), {"x": 1}, boot_id="b").read(GPUS)
    assert events == [] and cursor == {"x": 1}


def test_the_kernel_ring_buffer_is_read_by_sequence_and_never_twice():
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable here")
    events, cursor = kmsg.KernelLog("/dev/kmsg", {}, boot_id="b").read(GPUS)
    assert cursor["boot"] == "b" and cursor["seq"] >= 0
    again, later = kmsg.KernelLog("/dev/kmsg", cursor, boot_id="b").read(GPUS)
    assert later["seq"] >= cursor["seq"]
    assert not {e.key for e in events} & {e.key for e in again}
    _, rebooted = kmsg.KernelLog("/dev/kmsg", later, boot_id="other-boot").read(GPUS)
    assert rebooted["boot"] == "other-boot"  # a new boot reads its ring buffer afresh

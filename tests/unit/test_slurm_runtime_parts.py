"""The Slurm runtime's input and Slurm's node view, parsed without a cluster."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from clusterplane.agent.section_fields import SectionError
from clusterplane.agent.slurm.host import LocalHost
from clusterplane.agent.slurm.nodes import parse_nodes
from clusterplane.agent.slurm.runtime import SlurmRuntime, SlurmRuntimeError
from clusterplane.agent.slurm.section import parse_section
from clusterplane.domain.merge_patch import merge_patch

KEY = base64.b64encode(b"k" * 64).decode()


def worker(**changes: Any) -> dict[str, Any]:
    section: dict[str, Any] = {
        "role": "worker",
        "cluster": "lab",
        "controller_address": "10.0.0.1",
        "controller_port": 16817,
        "munge_key": KEY,
        "state_dir": "/var/lib/clusterplane/slurm/lab",
        "files": {"etc/prolog.sh": "#!/bin/sh\n"},
        "node_name": "gpu-1",
        "node_conf": "CPUs=32 RealMemory=64000 Gres=gpu:8",
        "gpu_devices": ["/dev/nvidia0"],
        "shm_size_gib": 8,
    }
    return section | changes


def test_a_worker_section_parses_into_its_fields() -> None:
    section = parse_section(worker())
    assert section.munge_key == b"k" * 64
    assert section.node_name == "gpu-1"
    assert section.conf_path == "/var/lib/clusterplane/slurm/lab/etc/slurm.conf"
    assert section.gpu_devices == ("/dev/nvidia0",)


@pytest.mark.parametrize(
    "changes",
    [
        {"role": "admin"},
        {"node_name": None},
        {"munge_key": "not base64!"},
        {"munge_key": base64.b64encode(b"short").decode()},
        {"state_dir": "relative/path"},
        {"state_dir": "/var/lib/../../etc"},
        {"files": {"../../etc/passwd": "x"}},
        {"files": {"etc/sub/dir.sh": "x"}},
        {"node_conf": "Gres=gpu:8\nNodeName=evil"},
        {"node_conf": "Gres=gpu:8; rm -rf /"},
        {"controller_port": "6817"},
        {"shm_size_gib": 0},
        {"surprise": 1},
    ],
)
def test_a_malformed_section_is_refused(changes: dict[str, Any]) -> None:
    raw = worker(**changes)
    if changes.get("node_name", "") is None:
        del raw["node_name"]
    with pytest.raises(SectionError):
        parse_section(raw)


def node(name: str, state: str, flags: list[str], reason: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "state": state,
        "state_flags": flags,
        "reason": reason,
        "reason_set_by_user": "root" if reason else None,
        "address": "10.0.0.11",
        "gres": "gpu:8",
        "gres_used": "gpu:0",
    }


def test_node_states_read_from_sinfo_json() -> None:
    text = json.dumps(
        {
            "nodes": [
                node("a", "idle", ["DYNAMIC_NORM"]),
                node("b", "allocated", ["DRAIN"], "clusterplane: scale down"),
                node("c", "idle", ["DRAIN"], "admin: disk"),
                node("d", "idle", ["NOT_RESPONDING"]),
                node("e", "mixed", []),
                node("f", "down", ["NOT_RESPONDING"], "Not responding"),
            ]
        }
    )
    view = parse_nodes(text)
    assert {name: n.summary for name, n in view.items()} == {
        "a": "idle",
        "b": "draining",
        "c": "drained",
        "d": "not_responding",
        "e": "mixed",
        "f": "not_responding",
    }
    assert view["c"].drained_by_someone_else("clusterplane:")
    assert not view["b"].drained_by_someone_else("clusterplane:")
    assert view["c"].reason_set_by == "root"


def test_sinfo_output_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ValueError, match="no JSON"):
        parse_nodes("sinfo: error: Unable to contact slurm controller")


def test_a_malformed_section_fails_the_report_and_touches_nothing(tmp_path: Path) -> None:
    host = LocalHost(state_dir=tmp_path / "agent", root=tmp_path / "root")
    runtime = SlurmRuntime(host)

    report = runtime.converge(worker(munge_key="not base64!"))

    assert report["ok"] is False
    assert report["phase"] == "failed"
    assert "munge_key" in report["message"]
    assert not (tmp_path / "root").exists()
    assert not (tmp_path / "agent").exists()


def test_a_host_with_no_cluster_has_nothing_to_tear_down_or_drain(tmp_path: Path) -> None:
    runtime = SlurmRuntime(LocalHost(state_dir=tmp_path / "agent", root=tmp_path / "root"))

    assert runtime.teardown()["messages"] == ["nothing to tear down"]
    with pytest.raises(SlurmRuntimeError, match="runs no Slurm cluster"):
        runtime.drain("gpu-1", "clusterplane: repair")


def test_a_controller_section_carries_drains_and_removals_and_refuses_foreign_reasons():
    base = {
        "role": "controller",
        "cluster": "lab",
        "controller_address": "127.1.0.11",
        "munge_key": "a" * 44,
        "state_dir": "/var/lib/slurm/lab",
    }
    section = parse_section(
        {**base, "drain": {"w1": "clusterplane: repair"}, "remove": {"w2": True}}
    )
    assert section.drain == {"w1": "clusterplane: repair"} and section.remove == ("w2",)
    for bad in (
        {"drain": {"w1": "operator: mine"}},
        {"drain": {"w1": "clusterplane: two\nlines"}},
        {"drain": {"bad name": "clusterplane: x"}},
        {"remove": ["w2"]},
        {"remove": {"w2": False}},
    ):
        with pytest.raises(SectionError):
            parse_section({**base, **bad})


def test_a_merge_patch_merges_objects_and_deletes_keys_set_to_null():
    target = {"files": {"a": "1", "b": "2"}, "role": "worker", "list": [1]}
    patched = merge_patch(
        target, {"files": {"a": None, "c": "3"}, "role": "controller", "list": [2]}
    )
    assert patched == {"files": {"b": "2", "c": "3"}, "role": "controller", "list": [2]}
    assert target["files"] == {"a": "1", "b": "2"}  # the target is not modified

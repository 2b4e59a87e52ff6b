"""The `slurm` section of a host's assignment, validated into a `SlurmSection`.

Schema (a JSON object; unknown keys are refused):

    role                "controller" | "worker" | "login"                         required
    cluster             Slurm cluster name ([A-Za-z0-9_-], 1-63)                   required
    controller_address  IP address or host name of slurmctld                      required
    controller_port     slurmctld's TCP port                                       default 6817
    munge_key           the cluster's munge key, standard base64 (32-1024 bytes)  required
    state_dir           absolute path of the cluster's directory on the host       required
                        (the same path the rendered slurm.conf names)
    files               {relative path under state_dir: content}: the rendered     default {}
                        files of this role (`etc/slurm.conf`, `etc/gres.conf`,
                        `etc/*.sh`); `*.sh` are written 0755, others 0644
    slurm_user          the user slurmctld runs as (controller)                    default "slurm"
    node_name           this worker's Slurm node name                             worker: required
    node_conf           `slurmd -Z --conf` value, e.g. "CPUs=32 Gres=gpu:8"       default ""
    config_generation   opaque tag of the controller's configuration; when it      default ""
                        changes a worker restarts slurmd, which fetches the new
                        configless files (running job steps are not touched)
    gpu_devices         this worker's GPU device files (must be char devices)     default []
    shm_size_gib        /dev/shm of a worker is made at least this large          default none
    drain               {node name: reason} the controller keeps drained; the     default {}
                        reason starts with `clusterplane:`; a node it drained
                        that left this map is resumed (controller)
    remove              {node name: true}: nodes the controller deletes once      default {}
                        drained and idle (or down) (controller)
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from clusterplane.agent import section_fields as fields
from clusterplane.agent.section_fields import SectionError

ROLES = ("controller", "worker", "login")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,252}$")
PATH = re.compile(r"^/[A-Za-z0-9_./-]{1,255}$")
NODE_CONF = re.compile(r"^([A-Za-z]+=[A-Za-z0-9:,._-]+( |$))*$")
GENERATION = re.compile(r"^[A-Za-z0-9._-]{0,64}$")
FILE_PATH = re.compile(r"^etc/[A-Za-z0-9_.-]{1,64}$")
KEYS = {
    "role",
    "cluster",
    "controller_address",
    "controller_port",
    "munge_key",
    "state_dir",
    "files",
    "slurm_user",
    "node_name",
    "node_conf",
    "config_generation",
    "gpu_devices",
    "shm_size_gib",
    "drain",
    "remove",
}
DRAIN_PREFIX = "clusterplane:"
MAX_NODES = 4096


@dataclass(frozen=True)
class SlurmSection:
    role: str
    cluster: str
    controller_address: str
    controller_port: int
    munge_key: bytes
    state_dir: str
    files: dict[str, str]
    slurm_user: str = "slurm"
    node_name: str | None = None
    node_conf: str = ""
    config_generation: str = ""
    gpu_devices: tuple[str, ...] = ()
    shm_size_gib: int | None = None
    drain: dict[str, str] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    @property
    def conf_path(self) -> str:
        return f"{self.state_dir}/etc/slurm.conf"


def parse_section(raw: dict[str, Any]) -> SlurmSection:
    unknown = set(raw) - KEYS
    if unknown:
        raise SectionError(f"unknown keys in the slurm section: {sorted(unknown)}")
    role = fields.string(raw, "role")
    if role not in ROLES:
        raise SectionError(f"role must be one of {ROLES}")
    node_name = raw.get("node_name")
    if role == "worker" and node_name is None:
        raise SectionError("a worker needs node_name")
    section = SlurmSection(
        role=role,
        cluster=fields.match(raw, "cluster", NAME),
        controller_address=fields.match(raw, "controller_address", TOKEN),
        controller_port=_port(raw.get("controller_port", 6817)),
        munge_key=_munge_key(raw.get("munge_key")),
        state_dir=_path(raw.get("state_dir"), "state_dir"),
        files=_files(raw.get("files", {})),
        slurm_user=fields.match(raw, "slurm_user", NAME, "slurm"),
        node_name=None if node_name is None else fields.match(raw, "node_name", TOKEN),
        node_conf=fields.match(raw, "node_conf", NODE_CONF, ""),
        config_generation=fields.match(raw, "config_generation", GENERATION, ""),
        gpu_devices=tuple(_path(p, "gpu_devices") for p in _list(raw, "gpu_devices")),
        shm_size_gib=_optional_size(raw.get("shm_size_gib")),
        drain=_drains(raw.get("drain", {})),
        remove=_removals(raw.get("remove", {})),
    )
    return section


def _port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise SectionError("controller_port must be a TCP port")
    return value


def _munge_key(value: object) -> bytes:
    if not isinstance(value, str):
        raise SectionError("munge_key must be base64 text")
    try:
        key = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise SectionError("munge_key must be base64 text") from exc
    if not 32 <= len(key) <= 1024:
        raise SectionError("munge_key must be 32 to 1024 bytes")
    return key


def _path(value: object, key: str) -> str:
    return fields.path(value, key, PATH)


def _files(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SectionError("files must be an object")
    for path, content in value.items():
        if not isinstance(path, str) or not FILE_PATH.match(path) or ".." in path:
            raise SectionError(f"files: bad path {str(path)[:80]!r} (etc/<name> only)")
        if not isinstance(content, str) or "\x00" in content:
            raise SectionError(f"files: {path} must be text")
    return dict(value)


def _node_name(value: object, key: str) -> str:
    if not isinstance(value, str) or not TOKEN.match(value):
        raise SectionError(f"{key}: bad node name {str(value)[:80]!r}")
    return value


def _removals(value: object) -> tuple[str, ...]:
    if not isinstance(value, dict) or len(value) > MAX_NODES:
        raise SectionError("remove must be an object of node name -> true")
    for node, flag in value.items():
        _node_name(node, "remove")
        if flag is not True:
            raise SectionError(f"remove: {node} must map to true")
    return tuple(sorted(value))


def _drains(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_NODES:
        raise SectionError("drain must be an object of node name -> reason")
    for node, reason in value.items():
        _node_name(node, "drain")
        if (
            not isinstance(reason, str)
            or not reason.startswith(DRAIN_PREFIX)
            or not reason.isprintable()
            or len(reason) > 200
        ):
            raise SectionError(
                f"drain: the reason for {node} is one line starting {DRAIN_PREFIX!r}"
            )
    return dict(value)


def _list(raw: dict[str, Any], key: str) -> list[object]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise SectionError(f"{key} must be a list")
    return value


def _optional_size(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4096:
        raise SectionError("shm_size_gib must be 1-4096")
    return value

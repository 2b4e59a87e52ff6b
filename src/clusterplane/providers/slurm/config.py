"""Slurm 22.05 configuration rendered from a cluster description (pure functions).

`render_files(spec)` gives the files each role of a SLURM cluster needs, as paths relative
to the cluster's state directory on the hosts (identical on every host, `spec.state_dir`):

- controller: `etc/slurm.conf`, `etc/gres.conf` (served to the workers in configless mode,
  `SlurmctldParameters=enable_configless`; see `render_gres_conf` for why a worker with the
  usual devices joins without a change) and the controller's prolog/epilog scripts;
- worker: its prolog/epilog scripts and `etc/nodeset-init.sh` (slurm.conf and gres.conf come
  from the controller); a worker runs `slurmd -Z --conf <worker_node_conf(node)>`, a dynamic
  node, so nodes join without a restart of slurmctld (`MaxNodeCount`, `TreeWidth=65533`);
- login: `etc/slurm.conf` for the client tools and `etc/login-init.sh`.

Layout under the state directory, which the node runtime (`clusterplane.agent.slurm.runtime`)
follows: `etc/` files above, `state/` StateSaveLocation, `spool/` SlurmdSpoolDir, `log/`,
`run/` pid files, `munge/` key and munged's files. munged listens on its default socket
`/run/munge/munge.socket.2` (a configless slurmd fetches its config before it has read
`AuthInfo`, so a private socket path cannot work on workers).

Everything user-supplied is checked before it reaches a file: names and addresses are
single tokens, startup scripts are file bodies (never spliced into slurm.conf) and
`extra_slurm_conf` may not set a parameter clusterplane owns. Bad input raises
`InvalidRequest` naming the field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from clusterplane.errors import InvalidRequest

SCRIPTS_PARAM = "cluster_config.slurm_startup_scripts"
MAX_SCRIPT_BYTES = 64 * 1024
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
DEVICE_PATH = re.compile(r"^/[A-Za-z0-9_./-]{1,255}$")
STATE_DIR = re.compile(r"^/[A-Za-z0-9_./-]{1,200}$")
CONF_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9]*)=")
# Parameters of slurm.conf that clusterplane sets and a user may not override through
# extra_slurm_conf: who the controller is, authentication, paths, users, plugins that run
# code or change process tracking, and the node/partition layout.
OWNED_KEYS = frozenset(
    key.lower()
    for key in [
        "AccountingStorageType",
        "AuthAltParameters",
        "AuthAltTypes",
        "AuthInfo",
        "AuthType",
        "BackupController",
        "BackupAddr",
        "ClusterName",
        "ControlAddr",
        "ControlMachine",
        "CredType",
        "DownNodes",
        "Epilog",
        "EpilogSlurmctld",
        "FrontendName",
        "GresTypes",
        "Include",
        "JobCompLoc",
        "JobCredentialPrivateKey",
        "JobCredentialPublicCertificate",
        "MailProg",
        "MaxNodeCount",
        "NodeName",
        "NodeSet",
        "PartitionName",
        "PluginDir",
        "PrologSlurmctld",
        "Prolog",
        "ProctrackType",
        "ResvEpilog",
        "ResvProlog",
        "SelectType",
        "SlurmctldHost",
        "SlurmctldLogFile",
        "SlurmctldParameters",
        "SlurmctldPidFile",
        "SlurmctldPort",
        "SlurmctldPrimaryOffProg",
        "SlurmctldPrimaryOnProg",
        "SlurmdLogFile",
        "SlurmdParameters",
        "SlurmdPidFile",
        "SlurmdPort",
        "SlurmdSpoolDir",
        "SlurmdUser",
        "SlurmUser",
        "SrunEpilog",
        "SrunProlog",
        "StateSaveLocation",
        "SuspendProgram",
        "ResumeProgram",
        "TaskEpilog",
        "TaskProlog",
        "TaskPlugin",
        "TreeWidth",
        "UnkillableStepProgram",
        "HealthCheckProgram",
        "RebootProgram",
    ]
)

CONTROLLER_PROLOG = "etc/prolog-slurmctld.sh"
CONTROLLER_EPILOG = "etc/epilog-slurmctld.sh"
WORKER_PROLOG = "etc/prolog.sh"
WORKER_EPILOG = "etc/epilog.sh"
NODESET_INIT = "etc/nodeset-init.sh"
LOGIN_INIT = "etc/login-init.sh"


@dataclass(frozen=True)
class SlurmStartupScripts:
    """`cluster_config.slurm_startup_scripts` of the wire spec (every field optional)."""

    worker_prolog: str | None = None
    worker_epilog: str | None = None
    controller_prolog: str | None = None
    controller_epilog: str | None = None
    login_init_script: str | None = None
    nodeset_init_script: str | None = None
    extra_slurm_conf: str | None = None


@dataclass(frozen=True)
class SlurmNode:
    """A GPU worker: its Slurm node name, address and GPU device files."""

    name: str
    address: str
    gpu_devices: tuple[str, ...] = ()
    cpus: int | None = None
    memory_mib: int | None = None


@dataclass(frozen=True)
class SlurmPartition:
    name: str
    nodes: tuple[str, ...] | None = None  # None: every node, dynamic ones included
    default: bool = False
    max_time: str = "INFINITE"


@dataclass(frozen=True)
class SlurmClusterSpec:
    name: str
    controller_name: str
    controller_address: str
    shm_size_gib: int
    nodes: tuple[SlurmNode, ...] = ()
    partitions: tuple[SlurmPartition, ...] = (SlurmPartition("gpu", default=True),)
    startup_scripts: SlurmStartupScripts = field(default_factory=SlurmStartupScripts)
    controller_port: int = 6817
    slurmd_port: int = 6818
    state_dir: str = "/var/lib/clusterplane/slurm"
    slurm_user: str = "slurm"
    slurmd_timeout_s: int = 60
    max_node_count: int = 1024


@dataclass(frozen=True)
class SlurmFiles:
    """File contents per role, keyed by path relative to the state directory."""

    controller: dict[str, str]
    worker: dict[str, str]
    login: dict[str, str]


def render_files(spec: SlurmClusterSpec) -> SlurmFiles:
    validate(spec)
    scripts = spec.startup_scripts
    slurm_conf = render_slurm_conf(spec)
    controller = {"etc/slurm.conf": slurm_conf, "etc/gres.conf": render_gres_conf(spec.nodes)}
    controller |= _scripts(
        {CONTROLLER_PROLOG: scripts.controller_prolog, CONTROLLER_EPILOG: scripts.controller_epilog}
    )
    worker = _scripts(
        {
            WORKER_PROLOG: scripts.worker_prolog,
            WORKER_EPILOG: scripts.worker_epilog,
            NODESET_INIT: scripts.nodeset_init_script,
        }
    )
    login = {"etc/slurm.conf": slurm_conf} | _scripts({LOGIN_INIT: scripts.login_init_script})
    return SlurmFiles(controller=controller, worker=worker, login=login)


def render_slurm_conf(spec: SlurmClusterSpec) -> str:
    validate(spec)
    base = spec.state_dir
    scripts = spec.startup_scripts
    lines = [
        "# Written by clusterplane; changes here are overwritten.",
        f"ClusterName={spec.name}",
        f"SlurmctldHost={spec.controller_name}({spec.controller_address})",
        f"SlurmctldPort={spec.controller_port}",
        f"SlurmdPort={spec.slurmd_port}",
        f"SlurmUser={spec.slurm_user}",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "SlurmctldParameters=enable_configless",
        f"StateSaveLocation={base}/state",
        f"SlurmdSpoolDir={base}/spool",
        f"SlurmctldPidFile={base}/run/slurmctld.pid",
        f"SlurmdPidFile={base}/run/slurmd.pid",
        f"SlurmctldLogFile={base}/log/slurmctld.log",
        f"SlurmdLogFile={base}/log/slurmd.log",
        "MailProg=/bin/true",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        f"SlurmdTimeout={spec.slurmd_timeout_s}",
        f"MaxNodeCount={max(spec.max_node_count, len(spec.nodes))}",
        "TreeWidth=65533",
        "GresTypes=gpu",
        "InactiveLimit=0",
        "KillWait=10",
    ]
    programs = {
        "Prolog": (scripts.worker_prolog, WORKER_PROLOG),
        "Epilog": (scripts.worker_epilog, WORKER_EPILOG),
        "PrologSlurmctld": (scripts.controller_prolog, CONTROLLER_PROLOG),
        "EpilogSlurmctld": (scripts.controller_epilog, CONTROLLER_EPILOG),
    }
    lines += [f"{key}={base}/{path}" for key, (body, path) in programs.items() if body]
    if scripts.extra_slurm_conf:
        lines += ["# extra_slurm_conf", *scripts.extra_slurm_conf.strip().splitlines()]
    lines += [_partition_line(partition) for partition in spec.partitions]
    return "\n".join(lines) + "\n"


def render_gres_conf(nodes: tuple[SlurmNode, ...]) -> str:
    """`File=` lines for the GPUs, one per device.

    When every node has the same device files (the usual fleet: /dev/nvidia0-7) the lines
    name no node, so a worker with those files joins without any change on the controller
    (no slurmctld restart while jobs run). Nodes that differ get `NodeName=` lines; a join
    then changes gres.conf. (Slurm 22.05: never apply that with `scontrol reconfigure`,
    see `clusterplane.agent.slurm.runtime`.)
    """
    lines = ["# Written by clusterplane from the hosts' inventory.", "AutoDetect=off"]
    device_sets = {node.gpu_devices for node in nodes if node.gpu_devices}
    if len(device_sets) == 1 and all(node.gpu_devices for node in nodes):
        lines += [f"Name=gpu File={device}" for device in sorted(device_sets.pop())]
        return "\n".join(lines) + "\n"
    for node in nodes:
        lines += [f"NodeName={node.name} Name=gpu File={device}" for device in node.gpu_devices]
    return "\n".join(lines) + "\n"


def config_generation(files: SlurmFiles) -> str:
    """A tag of what a configless slurmd fetches: the workers' `config_generation`.

    When it changes, a worker restarts its slurmd to fetch the new files.
    """
    digest = hashlib.sha256()
    for name in ("etc/slurm.conf", "etc/gres.conf"):
        digest.update(files.controller[name].encode() + b"\0")
    return digest.hexdigest()[:16]


def worker_node_conf(node: SlurmNode) -> str:
    """The `slurmd -Z --conf` value that registers `node` as a dynamic node."""
    parts = []
    if node.cpus is not None:
        parts.append(f"CPUs={node.cpus}")
    if node.memory_mib is not None:
        parts.append(f"RealMemory={node.memory_mib}")
    if node.gpu_devices:
        parts.append(f"Gres=gpu:{len(node.gpu_devices)}")
    return " ".join(parts)


def _partition_line(partition: SlurmPartition) -> str:
    nodes = "ALL" if partition.nodes is None else ",".join(partition.nodes)
    default = "YES" if partition.default else "NO"
    return (
        f"PartitionName={partition.name} Nodes={nodes} Default={default} "
        f"MaxTime={partition.max_time} State=UP"
    )


def _scripts(bodies: dict[str, str | None]) -> dict[str, str]:
    return {path: _script_body(body) for path, body in bodies.items() if body}


def _script_body(body: str) -> str:
    return body if body.startswith("#!") else "#!/bin/sh\n" + body


def validate(spec: SlurmClusterSpec) -> None:
    _check_name(spec.name, "name")
    _check_host(spec.controller_name, "controller_name")
    _check_address(spec.controller_address, "controller_address")
    _check_name(spec.slurm_user, "slurm_user")
    for port, param in (
        (spec.controller_port, "controller_port"),
        (spec.slurmd_port, "slurmd_port"),
    ):
        if not 1 <= port <= 65535:
            raise InvalidRequest(f"{param} must be a TCP port", param=param)
    if not STATE_DIR.match(spec.state_dir) or ".." in spec.state_dir.split("/"):
        raise InvalidRequest("state_dir must be a plain absolute path", param="state_dir")
    if spec.shm_size_gib < 1:
        raise InvalidRequest("slurm_shm_size_gib must be at least 1", param="slurm_shm_size_gib")
    if not 1 <= spec.slurmd_timeout_s <= 3600:
        raise InvalidRequest("slurmd_timeout_s must be 1-3600", param="slurmd_timeout_s")
    _check_nodes(spec.nodes)
    if not spec.partitions:
        raise InvalidRequest("a Slurm cluster needs a partition", param="partitions")
    known = {node.name for node in spec.nodes}
    for partition in spec.partitions:
        _check_name(partition.name, "partitions.name")
        for name in partition.nodes or ():
            if name not in known:
                raise InvalidRequest(f"partition {partition.name}: unknown node {name}")
    _check_scripts(spec.startup_scripts)


def _check_nodes(nodes: tuple[SlurmNode, ...]) -> None:
    seen: set[str] = set()
    for node in nodes:
        _check_host(node.name, "nodes.name")
        if node.name in seen:
            raise InvalidRequest(f"node {node.name} is listed twice", param="nodes.name")
        seen.add(node.name)
        _check_address(node.address, "nodes.address")
        for device in node.gpu_devices:
            if not DEVICE_PATH.match(device) or ".." in device.split("/"):
                raise InvalidRequest(f"bad GPU device path {device!r}", param="nodes.gpu_devices")
        for value, param in ((node.cpus, "nodes.cpus"), (node.memory_mib, "nodes.memory_mib")):
            if value is not None and value < 1:
                raise InvalidRequest(f"{param} must be positive", param=param)


def _check_scripts(scripts: SlurmStartupScripts) -> None:
    for name in SlurmStartupScripts.__dataclass_fields__:
        body = getattr(scripts, name)
        param = f"{SCRIPTS_PARAM}.{name}"
        if body is None:
            continue
        if len(body.encode()) > MAX_SCRIPT_BYTES:
            raise InvalidRequest(f"{name} is longer than {MAX_SCRIPT_BYTES} bytes", param=param)
        if "\x00" in body or "\r" in body:
            raise InvalidRequest(f"{name} may not contain NUL or CR characters", param=param)
    if scripts.extra_slurm_conf:
        _check_extra_conf(scripts.extra_slurm_conf)


def _check_extra_conf(text: str) -> None:
    param = f"{SCRIPTS_PARAM}.extra_slurm_conf"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            raise InvalidRequest(f"line {number}: continuation lines are not allowed", param=param)
        for token in line.split():
            match = CONF_KEY.match(token)
            if match is None:
                raise InvalidRequest(
                    f"line {number}: expected Key=Value, got {token!r}", param=param
                )
            if match.group(1).lower() in OWNED_KEYS:
                raise InvalidRequest(
                    f"line {number}: {match.group(1)} is set by clusterplane", param=param
                )


def _check_name(value: str, param: str) -> None:
    if not NAME.match(value):
        raise InvalidRequest(f"{param} must be 1-63 letters, digits, '-' or '_'", param=param)


def _check_host(value: str, param: str) -> None:
    if not HOSTNAME.match(value):
        raise InvalidRequest(f"{param} must be a host name", param=param)


def _check_address(value: str, param: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        _check_host(value, param)

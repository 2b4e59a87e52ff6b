"""The Slurm runtime of the node agent: munged, slurmctld and `slurmd -Z` on one host.

`SlurmRuntime(host).converge(section)` brings a host to its `slurm` section
(`section` documents the schema), idempotently: it writes the section's files
(the munge key 0600), runs munged with the cluster's key, slurmctld on the controller and
a dynamic, configless `slurmd -Z` on a worker, restarts a daemon that died, registers a
worker again when slurmctld lost it, and applies changed controller files by restarting
slurmctld, which keeps running jobs (`scontrol reconfigure` does not, see
`_ensure_slurmctld`); a worker whose `config_generation` changed restarts its slurmd to
fetch the new files (its job steps keep running). On the controller it then drains,
resumes and deletes nodes as the section's `drain` and `remove` maps say (resuming only
drains whose reason starts `clusterplane:`). It returns a report: `ok`, `phase`
("ready", "starting", "waiting" for slurmctld, or "failed"), `message`, `messages`, and
on the controller `nodes` (Slurm's view of each node) and `node_conditions` (ready or
not, and why: what the control plane reads as health's second signal).
`teardown()` stops every daemon it started (and a worker's job steps), unmounts what it
mounted and removes the state directory, the munge key and socket: nothing is left.

The controller's runtime also answers for the cluster (`nodes` parses the views):
`node_view()`, `drain(node, reason)` (the reason must start with `clusterplane:`),
`undrain(node)` (refused for a node someone else drained), `is_drained(node)` and
`remove_node(node)` (a drained, idle dynamic node). Every Slurm client call runs under a
timeout: the clients block and retry for minutes when slurmctld is away.

What the runtime started is recorded in `host.state_dir/slurm.json`, so `teardown()`
works after an agent restart and without the section.

Module functions `converge(section, ctx)` and `teardown(ctx)` are the agent's plug-in
interface; `ctx` is a `slurm.host.SlurmHost`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterplane.agent.section_fields import SectionError
from clusterplane.agent.slurm.host import SlurmHost
from clusterplane.agent.slurm.nodes import NodeView, parse_nodes
from clusterplane.agent.slurm.section import (
    DRAIN_PREFIX,
    TOKEN,
    SlurmSection,
    parse_section,
)

CLIENT_TIMEOUT = 10.0
DAEMON_START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
MUNGE_RUN_DIR = "/run/munge"
MUNGE_SOCKET = "/run/munge/munge.socket.2"
SLURMD_CONF_LINK = "/run/slurm/conf"
RECORD = "slurm.json"


class SlurmRuntimeError(RuntimeError):
    """A Slurm operation failed; the message says why."""


class NotOurDrain(SlurmRuntimeError):
    """The node was drained by someone other than clusterplane: it stays drained."""


class ControllerUnreachable(SlurmRuntimeError):
    """A worker's slurmd could not fetch its configuration: slurmctld is not up (yet)."""


class NodeBusy(SlurmRuntimeError):
    """The node still runs jobs or is not drained: it cannot be removed yet."""


@dataclass(frozen=True)
class Daemon:
    name: str  # the process name (comm) of the daemon
    pid_file: str


class SlurmRuntime:
    def __init__(self, host: SlurmHost):
        self.host = host

    # -- converge --------------------------------------------------------------------
    def converge(self, raw: dict[str, Any]) -> dict[str, Any]:
        messages: list[str] = []
        try:
            section = parse_section(raw)
        except SectionError as exc:
            return _report("failed", [str(exc)])
        nodes: dict[str, NodeView] | None = None
        record = self._record()
        identity = (section.state_dir, section.cluster, section.role)
        if record and (record["state_dir"], record["cluster"], record["role"]) != identity:
            messages.append(f"leaving cluster {record['cluster']} ({record['role']})")
            self.teardown()
            record = {}
        record.update(
            {"state_dir": section.state_dir, "cluster": section.cluster, "role": section.role}
        )
        record.setdefault("mounted", [])
        record.setdefault("initialized", False)
        self._save_record(record)
        try:
            changed = self._write_files(section)
            if section.role == "worker":
                self._check_devices(section)
                self._ensure_shm(section, record, messages)
            self._ensure_munged(
                section, key_changed="munge/munge.key" in changed, messages=messages
            )
            if not record["initialized"]:
                self._run_init_script(section, messages)
                record["initialized"] = True
                self._save_record(record)
            if section.role == "controller":
                phase = self._ensure_slurmctld(section, changed, messages)
                if phase == "ready":
                    nodes = self._apply_node_changes(section, messages)
            elif section.role == "worker":
                phase = self._ensure_slurmd(section, record, messages)
            else:
                phase = "ready"
        except ControllerUnreachable as exc:  # not a failure: the next pass tries again
            return _report("waiting", [*messages, str(exc)])
        except SlurmRuntimeError as exc:
            return _report("failed", [*messages, str(exc)])
        if changed:
            messages.append("wrote " + ", ".join(sorted(changed)))
        report = _report(phase, messages)
        if nodes is not None:
            report["nodes"] = {name: _node_report(view) for name, view in sorted(nodes.items())}
            report["node_conditions"] = {
                name: _condition(view) for name, view in sorted(nodes.items())
            }
            # Removals done: the control plane forgets them once their hosts left.
            report["removed"] = [name for name in section.remove if name not in nodes]
        return report

    def _apply_node_changes(
        self, section: SlurmSection, messages: list[str]
    ) -> dict[str, NodeView] | None:
        """Drain, resume and delete nodes as the controller's section says (only drains
        of clusterplane's own are resumed); Slurm's view of the nodes afterwards."""
        try:
            view = self.node_view()
        except SlurmRuntimeError as exc:  # reported; the next pass looks again
            messages.append(f"no node view: {exc}")
            return None
        changed = False
        for name, node in sorted(view.items()):
            wanted = section.drain.get(name)
            update = ["scontrol", "update", f"nodename={name}"]
            if wanted is not None and not node.drain:
                self.slurm([*update, "state=drain", f"reason={wanted}"])
                messages.append(f"drained {name}")
            elif wanted is None and node.drain and node.reason.startswith(DRAIN_PREFIX):
                self.slurm([*update, "state=resume"])
                messages.append(f"resumed {name}")
            elif name in section.remove and node.drain and node.state in ("idle", "down"):
                self.slurm(["scontrol", "delete", f"nodename={name}"])
                messages.append(f"deleted {name}")
            else:
                continue
            changed = True
        return self.node_view() if changed else view

    def _write_files(self, section: SlurmSection) -> set[str]:
        base = section.state_dir
        owner = section.slurm_user if section.role == "controller" else "root"
        for name, mode in (("etc", 0o755), ("spool", 0o755), ("munge", 0o755)):
            self._mkdir(f"{base}/{name}", mode, "root")
        for name in ("state", "log", "run"):
            self._mkdir(f"{base}/{name}", 0o755, owner)
        wanted = {f"etc/{Path(p).name}": content for p, content in section.files.items()}
        changed = {
            path
            for path, content in wanted.items()
            if self._write(f"{base}/{path}", content, 0o755 if path.endswith(".sh") else 0o644)
        }
        for stale in self.host.path(f"{base}/etc").iterdir():
            if f"etc/{stale.name}" not in wanted:
                stale.unlink()
                changed.add(f"etc/{stale.name}")
        if self._write(f"{base}/munge/munge.key", section.munge_key, 0o600):
            changed.add("munge/munge.key")
        return changed

    def _mkdir(self, absolute: str, mode: int, owner: str) -> None:
        target = self.host.path(absolute)
        if not target.is_dir():
            target.mkdir(parents=True, mode=mode)
            if owner != "root":
                self._command(["chown", f"{owner}:", absolute], "chown")

    def _write(self, absolute: str, content: str | bytes, mode: int) -> bool:
        target = self.host.path(absolute)
        data = content.encode() if isinstance(content, str) else content
        if (
            target.exists()
            and target.read_bytes() == data
            and target.stat().st_mode & 0o777 == mode
        ):
            return False
        scratch = target.with_name(f".{target.name}.new")
        scratch.touch(mode=0o600)
        scratch.write_bytes(data)
        scratch.chmod(mode)
        scratch.replace(target)
        return True

    def _check_devices(self, section: SlurmSection) -> None:
        for device in section.gpu_devices:
            target = self.host.path(device)
            if not target.is_char_device():
                raise SlurmRuntimeError(f"GPU device {device} is missing or not a device file")

    def _ensure_shm(
        self, section: SlurmSection, record: dict[str, Any], messages: list[str]
    ) -> None:
        if section.shm_size_gib is None:
            return
        stat = _statvfs(self.host.path("/dev/shm"))
        if stat >= section.shm_size_gib << 30:
            return
        self._command(
            ["mount", "-t", "tmpfs", "-o", f"size={section.shm_size_gib}g,mode=1777,nosuid,nodev",
             "tmpfs", "/dev/shm"],
            "mount /dev/shm",
        )  # fmt: skip
        record["mounted"].append("/dev/shm")
        self._save_record(record)
        messages.append(f"/dev/shm is {section.shm_size_gib} GiB")

    def _ensure_munged(
        self, section: SlurmSection, *, key_changed: bool, messages: list[str]
    ) -> None:
        munge = f"{section.state_dir}/munge"
        daemon = Daemon("munged", f"{munge}/munged.pid")
        if self._pid(daemon) and not key_changed:
            return
        self._stop(daemon)
        self._mkdir(MUNGE_RUN_DIR, 0o755, "root")
        argv = [
            "munged",
            f"--socket={MUNGE_SOCKET}",
            f"--key-file={munge}/munge.key",
            f"--pid-file={daemon.pid_file}",
            f"--log-file={munge}/munged.log",
            f"--seed-file={munge}/munged.seed",
            "--force",
        ]
        self._start(daemon, argv, env={})
        messages.append("munged started")

    def _run_init_script(self, section: SlurmSection, messages: list[str]) -> None:
        name = {"worker": "nodeset-init.sh", "login": "login-init.sh"}.get(section.role)
        script = f"{section.state_dir}/etc/{name}"
        if name is None or not self.host.path(script).exists():
            return
        result = self.host.run([script], timeout=300)
        if result.returncode:
            raise SlurmRuntimeError(f"{name} failed ({result.returncode}): {result.stderr[-500:]}")
        messages.append(f"{name} ran")

    def _ensure_slurmctld(
        self, section: SlurmSection, changed: set[str], messages: list[str]
    ) -> str:
        daemon = Daemon("slurmctld", f"{section.state_dir}/run/slurmctld.pid")
        env = {"SLURM_CONF": section.conf_path}
        if self._pid(daemon) is None:
            self._start(daemon, ["slurmctld"], env=env)
            messages.append("slurmctld started")
        elif changed & {"etc/slurm.conf", "etc/gres.conf"}:
            # Not `scontrol reconfigure`: on 22.05, once the set of dynamic nodes changed,
            # it leaves the nodes of a job running across it "allocated" for good. A
            # restart saves and reloads every job and node (SIGTERM) and is safe.
            self._stop(daemon)
            self._start(daemon, ["slurmctld"], env=env)
            messages.append("configuration applied (slurmctld restarted; jobs keep running)")
        ping = self.host.run(["timeout", "5", "scontrol", "ping"], timeout=10, env=env).stdout
        return "ready" if " is UP" in ping else "starting"

    def _ensure_slurmd(
        self, section: SlurmSection, record: dict[str, Any], messages: list[str]
    ) -> str:
        daemon = Daemon("slurmd", f"{section.state_dir}/run/slurmd.pid")
        assert section.node_name is not None
        running = self._pid(daemon)
        wanted = [section.node_conf, section.config_generation]
        if running and record.get("slurmd") == wanted:
            if self._registered(section, section.node_name):
                return "ready"
            messages.append("slurmctld does not know this node: registering again")
        self._check_controller_reachable(section)  # before stopping a running slurmd
        if running:
            self._stop(daemon)  # the node registers again; running job steps are not touched
        argv = [
            "slurmd", "-Z", "-N", section.node_name,
            "--conf-server", f"{section.controller_address}:{section.controller_port}",
        ]  # fmt: skip
        if section.node_conf:
            argv += ["--conf", section.node_conf]
        self._start(daemon, argv, env={})
        record["slurmd"] = wanted
        self._save_record(record)
        messages.append("slurmd started")
        return "ready"

    def _check_controller_reachable(self, section: SlurmSection) -> None:
        """Fail fast: slurmd spends about 9 s retrying a controller that is not there."""
        probe = ["timeout", "3", "bash", "-c", 'exec 3<>"/dev/tcp/$1/$2"', "probe"]
        address, port = section.controller_address, str(section.controller_port)
        if self.host.run([*probe, address, port], timeout=10).returncode:
            raise ControllerUnreachable(f"slurmd cannot reach slurmctld at {address}:{port} yet")

    def _registered(self, section: SlurmSection, node: str) -> bool:
        """False only when slurmctld answers that it has no such node.

        A dynamic node that registered after slurmctld last saved its state is forgotten
        when slurmctld dies (SIGKILL, a crash), and its slurmd never registers again on its
        own. An unreachable controller is not an answer: the node stays as it is.
        """
        conf = f"{section.state_dir}/spool/conf-cache/slurm.conf"
        result = self.host.run(
            ["timeout", "5", "scontrol", "show", "node", node], timeout=10,
            env={"SLURM_CONF": conf},
        )  # fmt: skip
        answer = result.stdout + result.stderr
        return not (result.returncode == 1 and f"Node {node} not found" in answer)

    # -- daemons ---------------------------------------------------------------------
    def _start(self, daemon: Daemon, argv: list[str], *, env: dict[str, str]) -> None:
        try:
            result = self.host.run(argv, timeout=DAEMON_START_TIMEOUT, env=env)
        except subprocess.TimeoutExpired as exc:
            raise SlurmRuntimeError(f"{daemon.name} did not start in time") from exc
        if result.returncode:
            detail = (result.stderr or result.stdout).strip()[-800:]
            if daemon.name == "slurmd" and "failed to fetch remote configs" in detail:
                raise ControllerUnreachable(f"slurmd cannot reach slurmctld yet: {detail}")
            raise SlurmRuntimeError(f"{daemon.name} did not start: {detail}")
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while self._pid(daemon) is None:
            if time.monotonic() > deadline:
                raise SlurmRuntimeError(f"{daemon.name} started but wrote no live pid file")
            time.sleep(0.05)

    def _pid(self, daemon: Daemon) -> int | None:
        """The daemon's pid when it runs (a zombie, reaped lazily by PID 1, is gone)."""
        try:
            pid = int(self.host.path(daemon.pid_file).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._comm(pid) == daemon.name else None

    def _comm(self, pid: int) -> str | None:
        try:
            stat = self.host.path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        return None if rest.split()[0] in ("Z", "X") else name

    def _stop(self, daemon: Daemon) -> bool:
        pid = self._pid(daemon)
        if pid is None:
            return False
        self._stop_pids([pid], daemon.name)
        return True

    def _stop_pids(
        self,
        pids: Sequence[int],
        what: str,
        signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGKILL),
    ) -> None:
        for sig in signals:
            live = [pid for pid in pids if self._comm(pid)]
            if not live:
                return
            self.host.run(["kill", f"-{sig.value}", *map(str, live)], timeout=10)
            deadline = time.monotonic() + STOP_TIMEOUT
            while any(self._comm(pid) for pid in live) and time.monotonic() < deadline:
                time.sleep(0.05)
        if any(self._comm(pid) for pid in pids):
            raise SlurmRuntimeError(f"{what} did not stop")

    # -- the cluster, seen from the controller ---------------------------------------
    def slurm(self, argv: list[str], conf: str | None = None) -> str:
        """Run a Slurm client command with a timeout; its output, or an error."""
        conf = conf or self._conf()
        result = self.host.run(
            ["timeout", str(int(CLIENT_TIMEOUT)), *argv],
            timeout=CLIENT_TIMEOUT + 5,
            env={"SLURM_CONF": conf},
        )
        if result.returncode == 124:
            raise SlurmRuntimeError(f"{argv[0]} timed out (is slurmctld up?)")
        if result.returncode:
            detail = (result.stderr or result.stdout).strip()[-800:]
            raise SlurmRuntimeError(f"{' '.join(argv[:3])} failed: {detail}")
        return result.stdout

    def _conf(self) -> str:
        record = self._record()
        if not record:
            raise SlurmRuntimeError("this host runs no Slurm cluster")
        return f"{record['state_dir']}/etc/slurm.conf"

    def node_view(self) -> dict[str, NodeView]:
        """Every node as Slurm sees it (state, drain and who drained, not responding)."""
        try:
            return parse_nodes(self.slurm(["sinfo", "--json"]))
        except ValueError as exc:
            raise SlurmRuntimeError(str(exc)) from exc

    def node(self, name: str) -> NodeView:
        if not TOKEN.match(name):
            raise SlurmRuntimeError(f"bad node name {name[:80]!r}")
        view = self.node_view().get(name)
        if view is None:
            raise SlurmRuntimeError(f"Slurm has no node {name}")
        return view

    def drain(self, node: str, reason: str) -> None:
        if not reason.startswith(DRAIN_PREFIX) or "\n" in reason or len(reason) > 200:
            raise SlurmRuntimeError(f"a drain reason is one line starting with {DRAIN_PREFIX!r}")
        current = self.node(node)
        if current.drained_by_someone_else(DRAIN_PREFIX):
            raise NotOurDrain(f"{node} is already drained by someone else: {current.reason}")
        self.slurm(["scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}"])

    def undrain(self, node: str) -> bool:
        """Resume a node clusterplane drained; False when it was not drained."""
        current = self.node(node)
        if not current.drain:
            return False
        if not current.reason.startswith(DRAIN_PREFIX):
            raise NotOurDrain(f"{node} was drained by someone else: {current.reason!r}")
        self.slurm(["scontrol", "update", f"nodename={node}", "state=resume"])
        return True

    def is_drained(self, node: str) -> bool:
        return self.node(node).drain

    def remove_node(self, node: str) -> None:
        """Delete a drained, idle dynamic node from the controller."""
        current = self.node(node)
        if not current.drain or current.state not in ("idle", "down"):
            raise NodeBusy(f"{node} is {current.state}{'+drain' if current.drain else ''}")
        self.slurm(["scontrol", "delete", f"nodename={node}"])

    # -- teardown --------------------------------------------------------------------
    def teardown(self) -> dict[str, Any]:
        record = self._record()
        if not record:
            return _report("ready", ["nothing to tear down"])
        base = record["state_dir"]
        if record.get("role") == "worker":
            self._stop_job_steps()
        for name in ("slurmd", "slurmctld", "munged"):
            folder = "munge" if name == "munged" else "run"
            self._stop(Daemon(name, f"{base}/{folder}/{name}.pid"))
        for mount in reversed(record.get("mounted", [])):
            self._command(["umount", mount], f"umount {mount}")
        self._remove_link(SLURMD_CONF_LINK, base)
        if not any(self._comm(pid) == "munged" for pid in self.host.processes()):
            for leftover in (MUNGE_SOCKET, f"{MUNGE_SOCKET}.lock"):  # ours, had it crashed
                self.host.path(leftover).unlink(missing_ok=True)
        self._command(["rm", "-rf", "--one-file-system", base], f"remove {base}")
        (self.host.state_dir / RECORD).unlink(missing_ok=True)
        return _report("ready", [f"removed cluster {record['cluster']}"])

    def _stop_job_steps(self) -> None:
        """Stop the jobs still on this worker: every slurmstepd and what it started."""
        parents = {pid: self._ppid(pid) for pid in self.host.processes()}
        steps = [pid for pid in parents if self._comm(pid) == "slurmstepd"]
        tasks: list[int] = []
        frontier = set(steps)
        while frontier:  # collected before anything dies: orphans lose their parent
            frontier = {pid for pid, parent in parents.items() if parent in frontier}
            tasks += frontier
        self._stop_pids(tasks, "job tasks")
        # With its tasks gone a slurmstepd only waits to report to slurmctld (which may be
        # gone) and ignores SIGTERM meanwhile.
        self._stop_pids(steps, "slurmstepd", signals=(signal.SIGKILL,))

    def _ppid(self, pid: int) -> int | None:
        try:
            stat = self.host.path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return int(stat.rsplit(")", 1)[1].split()[1])

    def _remove_link(self, link: str, base: str) -> None:
        target = self.host.path(link)
        if target.is_symlink() and str(target.readlink()).startswith(base + "/"):
            target.unlink()

    # -- helpers ---------------------------------------------------------------------
    def _command(self, argv: list[str], what: str) -> None:
        result = self.host.run(argv, timeout=60)
        if result.returncode:
            raise SlurmRuntimeError(f"{what} failed: {(result.stderr or result.stdout)[-500:]}")

    def _record(self) -> dict[str, Any]:
        try:
            data = json.loads((self.host.state_dir / RECORD).read_text())
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _save_record(self, record: dict[str, Any]) -> None:
        self.host.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.host.state_dir / RECORD
        scratch = path.with_name(f".{RECORD}.new")
        scratch.write_text(json.dumps(record, sort_keys=True))
        scratch.replace(path)


def _report(phase: str, messages: list[str]) -> dict[str, Any]:
    return {
        "ok": phase != "failed",
        "phase": phase,
        "message": "; ".join(messages[-3:]),
        "messages": messages,
    }


def _node_report(view: NodeView) -> dict[str, Any]:
    return {
        "state": view.summary,
        "drain": view.drain,
        "reason": view.reason[:200],
        "not_responding": view.not_responding,
        "address": view.address,
        "gres": view.gres,
    }


def _condition(view: NodeView) -> dict[str, Any]:
    """The flavour-neutral view the control plane reads as health's second signal."""
    ready = not (view.not_responding or view.state == "down")
    reason = "" if ready else f"{view.summary}: {view.reason}".rstrip(": ")[:200]
    return {"ready": ready, "reason": reason}


def _statvfs(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_blocks * stat.f_frsize


def converge(section: dict[str, Any], ctx: SlurmHost) -> dict[str, Any]:
    """The agent's plug-in entry point: converge this host to its `slurm` section."""
    return SlurmRuntime(ctx).converge(section)


def teardown(ctx: SlurmHost) -> None:
    """The agent's plug-in entry point: remove everything the runtime did on this host."""
    SlurmRuntime(ctx).teardown()

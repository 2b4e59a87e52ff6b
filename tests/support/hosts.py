"""Test "hosts": network + UTS + mount namespaces on a private loopback bridge.

`HostNetwork()` claims a bridge `cph<i>` with the subnet 127.1.<i>.0/24 (i is derived
from the pytest-xdist worker id, then the next free one: the bridge name is the lock, so
two runs or workers never share one) and a 0755 directory `/tmp/cph<i>-*` (daemons and
jobs' users must traverse it, so not pytest's 0700 tmp_path). `add_host(name)` makes a host:
- its own network namespace `cph<i>-<name>` with `eth0` (address 127.1.<i>.<10+n>) joined
  to the bridge by the veth `cph<i>v<n>`, and NO default route: traffic reaches only the
  bridge's /24, so no packet can leave the machine;
- its own UTS namespace (hostname `name`) and mount namespace, held open by a `sleep`
  holder process; inside it `/run` is a private tmpfs and `network.host_root` (one path,
  the same on every host, like `/` of a real machine) is bind-mounted from the host's own
  directory `<workdir>/hosts/<name>`, so files such as fake GPU devices and daemon state can
  live at identical paths on every host without colliding.

`host.run(argv)` / `host.popen(argv)` run a command inside the host (through `nsenter`
into the holder's namespaces, not `ip netns exec`, which remounts /sys and breaks slurmd);
`host.path(p)` is where this process reaches the host's file `p`; `cut_link()` and
`restore_link()` take the veth down and up. `overlay(path)` makes a directory such as /etc
the host's own (an overlayfs whose writes land in the host's private directory, so the
machine's copy never changes) and `own_dir(path)` mounts an empty private directory over
one such as /home: hosts then differ in accounts, sshd configuration and homes as
separate machines do.

127/8 between namespaces needs `route_localnet` on every interface and a
`127.1.<i>.0/24 ... table local` route in the root namespace and in each host: without the
route the kernel's `local 127.0.0.0/8` delivers the hosts' addresses to the root
namespace's own listeners.

`close()` kills every process left in the hosts' namespaces (and their orphaned TCP
sockets), deletes the namespaces, the route, the bridge and the directory (only what this
network created) and raises `LeftoverError` when a process had been left running or
anything is still there (a namespace, a link, a process in a host's network or mount
namespace, which would keep its mounts alive, a mount under the directory, the
directory). The holders die with the process that made them (`setpriv --pdeathsig`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
MAX_HOSTS = 200


class LeftoverError(AssertionError):
    """Teardown found something this network created still present."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def _sysctl(*assignments: str) -> None:
    subprocess.run(["sysctl", "-qw", *assignments], check=True, timeout=10)


def worker_index() -> int:
    """0 outside pytest-xdist, N for worker gwN: where the subnet search starts."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def namespace_inode(pid: int, kind: str = "net") -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:  # gone, or a zombie (its namespaces are already released)
        return None


def pids_in_namespace(inode: int, kind: str = "net") -> list[int]:
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and namespace_inode(int(entry), kind) == inode
    ]


@dataclass
class Host:
    """One namespaced host: a hostname, an address, and a holder process."""

    name: str
    address: str
    netns: str
    veth: str
    private_dir: Path
    holder: subprocess.Popen[bytes]
    net_inode: int
    mnt_inode: int
    env: dict[str, str] = field(default_factory=dict)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run inside this host's network, UTS and mount namespaces."""
        pid = str(self.holder.pid)
        return ["nsenter", "-t", pid, "--net", "--uts", "--mount", "--wd=/", "--", *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env={**os.environ, **self.env, **(env or {})},
            input=input,
        )

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """A long-running process inside the host (the caller ends it or `close()` does)."""
        return subprocess.Popen(self.command(argv), **kwargs)  # type: ignore[call-overload,no-any-return]

    def path(self, host_path: str | Path) -> Path:
        """Where this process reaches the file `host_path` as the host sees it."""
        relative = Path(host_path).relative_to("/")
        return Path(f"/proc/{self.holder.pid}/root") / relative

    def overlay(self, path: str) -> Path:
        """Make the directory `path` the host's own, copy-on-write over the machine's: an
        overlayfs in the host's mount namespace; returns its upper directory (what the
        host wrote or deleted there)."""
        layers = self.private_dir / "overlays" / _slug(path)
        upper, work = layers / "upper", layers / "work"
        upper.mkdir(parents=True, mode=0o755)
        work.mkdir(mode=0o755)
        options = f"lowerdir={path},upperdir={upper},workdir={work}"
        self.run(["mount", "-t", "overlay", "overlay", "-o", options, path])
        return upper

    def own_dir(self, path: str) -> Path:
        """Mount an empty directory of the host's own (root's, 0755) over `path`; returns
        where it lives on the machine."""
        source = self.private_dir / "dirs" / _slug(path)
        source.mkdir(parents=True, mode=0o755)
        self.run(["mount", "--bind", str(source), path])
        return source

    def mounts(self) -> list[str]:
        """Mount points in this host's mount namespace, in mount order."""
        with open(f"/proc/{self.holder.pid}/mountinfo") as info:
            return [_unescape(line.split()[4]) for line in info if line.strip()]

    def cut_link(self) -> None:
        _ip("link", "set", self.veth, "down")

    def restore_link(self) -> None:
        _ip("link", "set", self.veth, "up")

    def processes(self) -> list[int]:
        """Live processes in this host's network namespace, the holder excluded."""
        return [pid for pid in pids_in_namespace(self.net_inode) if pid != self.holder.pid]


class HostNetwork:
    """A private loopback bridge and the hosts on it; a context manager."""

    def __init__(self, *, start_index: int | None = None):
        self.hosts: list[Host] = []
        self.index = self._claim_bridge(worker_index() if start_index is None else start_index)
        self.bridge = f"cph{self.index}"
        # Not under pytest's 0700 tmp_path: daemons (munged) and jobs' users need to traverse it.
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.bridge}-"))
        self.workdir.chmod(0o755)
        self.host_root = self.workdir / "root"
        self.host_root.mkdir()
        self.prefix = f"127.1.{self.index}"
        self.subnet = f"{self.prefix}.0/24"
        self.gateway = f"{self.prefix}.1"
        try:
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _sysctl(f"net.ipv4.conf.{self.bridge}.route_localnet=1")
            _ip("link", "set", self.bridge, "up")
            route = ["add", self.subnet, "dev", self.bridge, "src", self.gateway]
            _ip("route", *route, "table", "local")
        except BaseException:
            self.close(verify=False)
            raise

    @staticmethod
    def _claim_bridge(start: int) -> int:
        for offset in range(256):
            index = (start + offset) % 256
            subnet = f"127.1.{index}.0/24"
            if _ip("route", "show", "table", "local", subnet).stdout.strip() or _stale(index):
                continue
            if _ip("link", "add", f"cph{index}", "type", "bridge", check=False).returncode:
                continue  # another run holds this index
            if _ip("route", "show", "table", "local", subnet).stdout.strip():
                _ip("link", "del", f"cph{index}")
                continue
            return index
        raise RuntimeError("no free 127.1.<i>.0/24 subnet for a test host network")

    def add_host(self, name: str) -> Host:
        if not NAME.match(name):
            raise ValueError(f"bad host name {name!r}")
        number = len(self.hosts) + 1
        if number > MAX_HOSTS:
            raise ValueError("too many hosts on one test network")
        netns, veth = f"cph{self.index}-{name}", f"cph{self.index}v{number}"
        private_dir = self.workdir / "hosts" / name
        private_dir.mkdir(parents=True, mode=0o755)
        _ip("netns", "add", netns)
        try:
            host = self._make_host(name, number, netns, veth, private_dir)
        except BaseException:
            _ip("netns", "del", netns, check=False)  # its veth goes with it
            raise
        self.hosts.append(host)
        return host

    def _make_host(self, name: str, number: int, netns: str, veth: str, private_dir: Path) -> Host:
        address = f"{self.prefix}.{10 + number}"
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        _sysctl(f"net.ipv4.conf.{veth}.route_localnet=1")
        inside = ["ip", "netns", "exec", netns]
        subprocess.run(
            [*inside, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1",
             "net.ipv4.conf.eth0.route_localnet=1"],
            check=True, timeout=10,
        )  # fmt: skip
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        route = ["route", "add", self.subnet, "dev", "eth0", "src", address, "table", "local"]
        _ip("-n", netns, *route)
        holder = self._start_holder(netns, name, private_dir)
        inode, mnt_inode = namespace_inode(holder.pid), namespace_inode(holder.pid, "mnt")
        assert inode is not None and mnt_inode is not None
        return Host(name, address, netns, veth, private_dir, holder, inode, mnt_inode)

    def _start_holder(self, netns: str, name: str, private_dir: Path) -> subprocess.Popen[bytes]:
        script = (
            'hostname "$1" && mount -t tmpfs -o mode=755 tmpfs /run'
            ' && mount --bind "$2" "$3" && echo ready && exec sleep infinity'
        )
        holder = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "nsenter", f"--net=/run/netns/{netns}",
             "unshare", "--uts", "--mount", "--propagation", "private",
             "sh", "-c", script, "holder", name,
             str(private_dir), str(self.host_root)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        assert holder.stdout is not None
        line = holder.stdout.readline()
        if line.strip() != b"ready":
            holder.kill()
            holder.wait()
            raise RuntimeError(f"host {name}: namespace holder did not start")
        deadline = time.monotonic() + 5  # until `exec sleep`: the holder pid is the sleeper
        while Path(f"/proc/{holder.pid}/comm").read_text().strip() != "sleep":
            if time.monotonic() > deadline:
                raise RuntimeError(f"host {name}: namespace holder did not settle")
            time.sleep(0.01)
        return holder

    def __enter__(self) -> HostNetwork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(verify=exc_type is None)

    def close(self, *, verify: bool = True) -> None:
        """Remove everything this network created; with `verify`, fail on leftovers."""
        killed: list[str] = []
        for host in self.hosts:
            strays = host.processes()
            if strays:
                killed.append(f"{host.name}: {_describe(strays)}")
            deadline = time.monotonic() + 10
            while strays and time.monotonic() < deadline:  # an nsenter may enter late
                _kill_all(strays)
                strays = host.processes()
            host.holder.kill()
            host.holder.wait(timeout=10)
            # TCP sockets whose process is gone (orphans still sending a FIN to a peer
            # whose link was cut) would keep the namespace, and its veth, for minutes.
            subprocess.run(
                ["nsenter", f"--net=/run/netns/{host.netns}", "ss", "-K", "-t", "-a"],
                capture_output=True, check=False, timeout=10,
            )  # fmt: skip
            _ip("netns", "del", host.netns, check=False)
        _ip("route", "del", self.subnet, "dev", self.bridge, "table", "local", check=False)
        _ip("link", "del", self.bridge, check=False)
        deadline = time.monotonic() + 10  # veths vanish a moment after their namespace
        while (left := self._leftovers()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not left:
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self.workdir.exists():
                left.append(f"directory {self.workdir}")
        left = [*(f"process still running at teardown: {entry}" for entry in killed), *left]
        if left and verify:
            raise LeftoverError("test hosts left behind: " + "; ".join(left))

    def _leftovers(self) -> list[str]:
        left: list[str] = []
        for host in self.hosts:
            if Path(f"/run/netns/{host.netns}").exists():
                left.append(f"namespace {host.netns}")
            if _ip("link", "show", host.veth, check=False).returncode == 0:
                left.append(f"veth {host.veth}")
            if pids_in_namespace(host.net_inode):
                left.append(f"processes in {host.netns}")
            if pids_in_namespace(host.mnt_inode, "mnt"):
                left.append(f"processes in the mount namespace of {host.name}")
        if _ip("link", "show", self.bridge, check=False).returncode == 0:
            left.append(f"bridge {self.bridge}")
        if _ip("route", "show", "table", "local", self.subnet).stdout.strip():
            left.append(f"route {self.subnet} table local")
        with open("/proc/self/mountinfo") as info:
            points = [_unescape(line.split()[4]) for line in info if line.strip()]
        left += [f"mount {p}" for p in points if Path(p).is_relative_to(self.workdir)]
        return left


def _stale(index: int) -> bool:
    """Namespaces or links of index `index` left by a run that crashed: not reused."""
    prefix = f"cph{index}"
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    links = _ip("-o", "link", "show").stdout.split("\n")
    names = [line.split(":")[1].strip().split("@")[0] for line in links if line.count(":") > 1]
    return any(n.startswith(f"{prefix}-") for n in netns) or any(
        n == prefix or re.fullmatch(rf"{prefix}v\d+", n) for n in names
    )


def _slug(path: str) -> str:
    return path.strip("/").replace("/", "-") or "root"


def _unescape(path: str) -> str:
    """A mount point as /proc/*/mountinfo writes it (octal escapes) back to text."""
    return path.encode().decode("unicode_escape")


def _describe(pids: Sequence[int]) -> str:
    names = []
    for pid in pids:
        try:
            names.append(f"{Path(f'/proc/{pid}/comm').read_text().strip()}[{pid}]")
        except OSError:
            continue
    return ", ".join(names)


def _kill_all(pids: Sequence[int], grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    """True for a running process; a zombie (reaped lazily by PID 1) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"

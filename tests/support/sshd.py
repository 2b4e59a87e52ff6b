"""OpenSSH for tests: throw-away servers, a user CA that signs keys, and the client.

`Sshd(workdir, trusted_ca_keys)` starts Debian's /usr/sbin/sshd in the foreground on a free
127.0.0.1 port with its own host key: no passwords, no authorized_keys, only user
certificates signed by one of `trusted_ca_keys` (TrustedUserCAKeys).

`NodeSshd(host)` is a namespaced test host's own sshd (tests/support/hosts.py), configured
as a node's: port 22 on the host's address, `Include /etc/ssh/sshd_config.d/*.conf` first
(so the node agent's TrustedUserCAKeys drop-in takes effect), PAM as on Debian, a host key
of its own. It writes the host's /etc, so that must be the host's own (`host.overlay`).
`reload_command` is what the agent runs to reload it: SIGHUP, then wait until sshd listens
again (re-executed with the new configuration), so a login right after the agent reports
its change meets the new configuration.

`UserCa(directory)` is an SSH user certificate authority (ssh-keygen); `issue(principal)`
makes a user key with a certificate beside it. `ssh(...)` runs the OpenSSH client in batch
mode against known host keys. scripts/ensure-test-tools.sh installs openssh-server when
missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.hosts import Host
from tests.support.server import free_port

SSHD = Path("/usr/sbin/sshd")
NODE_SSHD_CONFIG = """\
Include /etc/ssh/sshd_config.d/*.conf
ListenAddress {address}
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
UsePAM yes
KbdInteractiveAuthentication no
PasswordAuthentication no
PermitRootLogin no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
"""
# Inside the host: /proc/net/tcp is its network namespace's; 0A is LISTEN, 0016 port 22.
NODE_SSHD_RELOAD = """\
set -eu
listener() {{ awk '$4 == "0A" && $2 ~ /:0016$/ {{ print $10 }}' /proc/net/tcp; }}
old=$(listener)
kill -HUP "$(cat /run/sshd.pid)"
tries=0
while [ $tries -lt 200 ]; do
  new=$(listener)
  if [ -n "$new" ] && [ "$new" != "$old" ]; then exit 0; fi
  sleep 0.05
  tries=$((tries + 1))
done
echo "sshd on {address} did not listen again after SIGHUP" >&2
exit 1
"""


class Sshd:
    def __init__(self, workdir: Path, trusted_ca_keys: list[str]):
        self.workdir = workdir
        self.port = free_port()
        self.log_path = workdir / "sshd.log"
        workdir.mkdir(parents=True, exist_ok=True)
        host_key = workdir / "host_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
        trusted = workdir / "trusted_user_ca_keys"
        trusted.write_text("".join(f"{key}\n" for key in trusted_ca_keys))
        self.config = workdir / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {host_key}\n"
            f"PidFile {workdir / 'sshd.pid'}\n"
            f"TrustedUserCAKeys {trusted}\n"
            "AuthorizedKeysFile none\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "PermitRootLogin prohibit-password\n"
            "LogLevel VERBOSE\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> Sshd:
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited:\n{self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_listening(
    address: str, port: int, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited:\n{log.read_text()}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {address}:{port}:\n{log.read_text()}")


class NodeSshd:
    """A namespaced host's own sshd on port 22 of its address."""

    def __init__(self, host: Host):
        self.host = host
        self.log_path = host.private_dir / "sshd.log"
        self.reload_script = host.private_dir / "sshd-reload.sh"
        self.process: subprocess.Popen[bytes] | None = None
        ssh = host.path("/etc/ssh")
        for stale in [*ssh.glob("ssh_host_*"), *(ssh / "sshd_config.d").glob("*")]:
            stale.unlink()  # the machine's keys and drop-ins: hidden in this host only
        host.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name,
                  "-f", "/etc/ssh/ssh_host_ed25519_key"])  # fmt: skip
        (ssh / "sshd_config").write_text(NODE_SSHD_CONFIG.format(address=host.address))
        self.reload_script.write_text(NODE_SSHD_RELOAD.format(address=host.address))

    @property
    def reload_command(self) -> list[str]:
        return ["sh", str(self.reload_script)]

    def known_hosts_line(self) -> str:
        key = self.host.path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
        return f"{self.host.address} {key[0]} {key[1]}\n"

    def start(self, timeout: float = 10.0) -> NodeSshd:
        self.host.path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
        with self.log_path.open("ab") as log:
            self.process = self.host.popen(
                [str(SSHD), "-D", "-e", "-f", "/etc/ssh/sshd_config"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_listening(self.host.address, 22, self.process, self.log_path, timeout)
        return self

    def stop(self) -> None:
        """SIGTERM to the listener; sessions still open end with it (sshd's own rule)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class UserCa:
    """An SSH user certificate authority, and user keys it signs."""

    def __init__(self, directory: Path, name: str = "user-ca"):
        self.directory = directory
        self.key = directory / name
        directory.mkdir(parents=True, exist_ok=True)
        _keygen(self.key, comment=name)
        self.public_key = Path(f"{self.key}.pub").read_text().strip()
        self.issued = 0

    def issue(self, principal: str, *, valid: str = "+10m") -> Path:
        """A new user key for `principal`; ssh finds its certificate (`<key>-cert.pub`)."""
        self.issued += 1
        identity = self.directory / f"{principal}-{self.issued}"
        _keygen(identity, comment=principal)
        subprocess.run(
            ["ssh-keygen", "-q", "-s", str(self.key), "-I", identity.name, "-n", principal,
             "-V", valid, f"{identity}.pub"],
            check=True, capture_output=True,
        )  # fmt: skip
        return identity


def _keygen(path: Path, *, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def ssh(
    address: str,
    login: str,
    identity: Path,
    command: str,
    *,
    known_hosts: Path,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """`command` (a shell command line) run by OpenSSH's client: no user config, no prompts,
    the host key checked; exit status 255 when ssh itself failed ("Permission denied")."""
    return subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(identity), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=5",
         "-o", "LogLevel=ERROR", "--", f"{login}@{address}", command],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip

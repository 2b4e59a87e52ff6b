"""A throw-away OpenSSH server on loopback that trusts given user CAs, and nothing else.

`Sshd(workdir, trusted_ca_keys)` starts Debian's /usr/sbin/sshd in the foreground on a free
127.0.0.1 port with its own host key: no passwords, no authorized_keys, only user
certificates signed by one of `trusted_ca_keys` (TrustedUserCAKeys). scripts/ensure-test-
tools.sh installs openssh-server when missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from tests.support.server import free_port

SSHD = Path("/usr/sbin/sshd")


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

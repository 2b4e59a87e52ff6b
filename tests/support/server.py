"""A real `clusterplane serve` process on a free port, for tests that drive it over HTTP.

`ServerProcess` starts the console script from this virtualenv with its own SQLite file,
a known admin key and a chosen time scale, waits until it answers, and can be killed with
SIGKILL and started again on the same database (crash tests).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from clusterplane.services.auth import generate_key_text
from tests.support.databases import fresh_database_url
from tests.support.engine import TEST_CREDENTIALS_KEY

BIN = Path(sys.executable).parent
SMALL_FLEET = Path(__file__).resolve().parents[2] / "src/clusterplane/fleets/small.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        workdir: Path,
        *,
        time_scale: float = 600.0,
        fleet: Path | None = None,
        database_url: str | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        self.workdir = workdir
        self.time_scale = time_scale
        self.fleet = fleet
        self.database_url = database_url or fresh_database_url(workdir)
        self.extra_args = extra_args
        self.port = free_port()
        self.api_key = generate_key_text()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CLUSTERPLANE_ADMIN_API_KEY"] = self.api_key
        env["CLUSTERPLANE_CREDENTIALS_KEY"] = TEST_CREDENTIALS_KEY
        return env

    def start(self, timeout: float = 30.0) -> ServerProcess:
        args = [
            str(BIN / "clusterplane"),
            "serve",
            "--port",
            str(self.port),
            "--database-url",
            self.database_url,
            "--time-scale",
            str(self.time_scale),
            "--log-level",
            "warning",
            *self.extra_args,
        ]
        if self.fleet is not None:
            args += ["--fleet", str(self.fleet)]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks run, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30
        )

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

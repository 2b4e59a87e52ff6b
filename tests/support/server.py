"""A real `clusterplane serve` process on a free port, for tests that drive it over HTTP.

`ServerProcess` starts the console script from this virtualenv with its own SQLite file,
a known admin key and a chosen time scale, waits until it answers, and can be killed with
SIGKILL and started again on the same database (crash tests). `admin_key=None` or
`credentials_key=None` start it without that environment variable, as an operator who
relies on the generated admin key or the key file under ./.clusterplane would. `host` is
the address it listens on (`--host`): 127.0.0.1, or a test network's bridge address so
that namespaced test hosts reach it (tests/support/agent_fleet.py).
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

from clusterplane.services.access.auth import generate_key_text
from tests.support.databases import fresh_database_url
from tests.support.engine import TEST_CREDENTIALS_KEY

BIN = Path(sys.executable).parent
SMALL_FLEET = Path(__file__).resolve().parents[2] / "src/clusterplane/fleets/small.yaml"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
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
        admin_key: str | None = "",
        credentials_key: str | None = TEST_CREDENTIALS_KEY,
        host: str = "127.0.0.1",
    ):
        self.workdir = workdir
        self.host = host
        self.time_scale = time_scale
        self.fleet = fleet
        self.database_url = database_url or fresh_database_url(workdir)
        self.extra_args = extra_args
        self.port = free_port(host)
        # "" (the default): a fresh key; None: no CLUSTERPLANE_ADMIN_API_KEY at all.
        self.api_key = generate_key_text() if admin_key == "" else admin_key
        self.credentials_key = credentials_key
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CLUSTERPLANE_ADMIN_API_KEY", None)
        env.pop("CLUSTERPLANE_CREDENTIALS_KEY", None)
        if self.api_key is not None:
            env["CLUSTERPLANE_ADMIN_API_KEY"] = self.api_key
        if self.credentials_key is not None:
            env["CLUSTERPLANE_CREDENTIALS_KEY"] = self.credentials_key
        return env

    def command(self) -> list[str]:
        args = [
            str(BIN / "clusterplane"),
            "serve",
            "--host",
            self.host,
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
        return args

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(),
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

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key or self.api_key}"},
            timeout=30,
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

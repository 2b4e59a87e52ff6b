"""The official `together` CLI as a user runs it, and kubectl, for tests that drive them.

`Tg(env, cwd)("clusters", "list", "--json")` runs `together <args> --non-interactive`
against a server whose environment `cli_env(server, home)` makes: `TOGETHER_BASE_URL`
and `TOGETHER_API_KEY` set, no project (so it asks `GET /v3/whoami` first), no stored
login, none of the variables that make it think an AI agent is driving it (those switch
it to JSON output), and `CI=1` as in a CI job (so it installs no shell completion).
`kubectl_program()` is Debian's kubectl that `scripts/ensure-test-tools.sh` provides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import BIN, ServerProcess

# Debian's kubectl, unpacked here by scripts/ensure-test-tools.sh when /usr/bin/kubectl is
# another package's (such as the Google Cloud SDK's dispatcher, which runs exec plugins).
DEBIAN_KUBECTL = (
    Path(__file__).resolve().parents[2] / ".cache/tools/kubernetes-client/usr/bin/kubectl"
)


def kubectl_program() -> str:
    kubectl = str(DEBIAN_KUBECTL) if DEBIAN_KUBECTL.exists() else shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("needs kubectl: scripts/ensure-test-tools.sh installs kubernetes-client")
    return kubectl


def _agent_variables() -> set[str]:
    """Every variable `detect_agent` (the CLI's agent detection) looks at, except PATH."""
    spec = json.loads((resources.files("detect_agent") / "agents.json").read_text())
    names = {spec["aiAgentVar"], "PI_CODING_AGENT"}

    def walk(condition: dict[str, Any]) -> None:
        if "name" in condition:
            names.add(condition["name"])
        for inner in condition.get("conditions", ()):
            walk(inner)

    for agent in spec["agents"]:
        walk(agent["match"])
    return names - {"PATH"}


def cli_env(server: ServerProcess, home: Path) -> dict[str, str]:
    dropped = _agent_variables() | {
        "TOGETHER_PROJECT_ID",
        "TOGETHER_CUSTOM_HEADERS",
        "TOGETHER_LOG",
    }
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        TOGETHER_BASE_URL=server.base_url,
        TOGETHER_API_KEY=server.api_key,
        # A private home: no stored `tg login`, no ~/.kube or shell files touched.
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        TOGETHER_CREDENTIALS_PATH=str(home / "no-credentials.json"),
        # Nothing leaves the machine: no telemetry, no PyPI version check.
        TOGETHER_TELEMETRY_DISABLED="1",
        TOGETHER_DISABLE_VERSION_CHECK="1",
        CI="1",
        # rich wraps and truncates at 80 columns when stdout is not a terminal.
        COLUMNS="4096",
    )
    return env


@dataclass
class Tg:
    """Runs `together <args> --non-interactive` against the module's server."""

    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, exit_code: int | None = 0) -> subprocess.CompletedProcess[str]:
        """Run once and check the exit status; `exit_code=None` leaves it to the caller."""
        result = subprocess.run(
            [str(BIN / "together"), *args, "--non-interactive"],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        assert exit_code is None or result.returncode == exit_code, (
            f"`together {' '.join(args)}` exited {result.returncode}, expected {exit_code}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def json(self, *args: str, exit_code: int = 0) -> Any:
        return json.loads(self(*args, "--json", exit_code=exit_code).stdout)

    def text(self, *args: str, exit_code: int = 0) -> str:
        return self(*args, "--no-json", exit_code=exit_code).stdout

    def side_by_side(self, *commands: tuple[str, ...]) -> list[str]:
        """Run independent commands side by side (each CLI start costs over a second of
        CPU) and return their standard outputs in order; each must exit 0."""
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            results = list(pool.map(lambda args: self(*args), commands))
        return [r.stdout for r in results]

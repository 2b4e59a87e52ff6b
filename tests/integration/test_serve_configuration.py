"""`clusterplane serve --config` and `clusterplane config show` as real processes: a bad
setting stops the start with its path and reason (exit 2, no traceback), the file is
read, and the sources of the effective settings are shown with secrets masked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.server import BIN, SMALL_FLEET, ServerProcess


def run_cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    server = ServerProcess(tmp_path)
    environ = server.env() | (env or {})
    return subprocess.run(
        [str(BIN / "clusterplane"), *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("toml", "env", "says"),
    [
        (
            "[server]\nread_cache_seconds = -1\n",
            {},
            "server.read_cache_seconds: must be at least 0",
        ),
        ("[health]\ncooldown = 5\n", {}, "health.cooldown: unknown setting"),
        (
            '[webhooks]\nca_file = "no-such-ca.pem"\n',
            {},
            "webhooks.ca_file: no-such-ca.pem is not a readable file",
        ),
        ("", {"CLUSTERPLANE_SERVER__PORT": "http"}, "CLUSTERPLANE_SERVER__PORT: 'http' is not"),
    ],
)
def test_a_bad_setting_stops_the_server_with_its_path_and_reason(
    tmp_path: Path, toml: str, env: dict[str, str], says: str
):
    config = tmp_path / "clusterplane.toml"
    config.write_text(toml)
    server = ServerProcess(tmp_path, fleet=SMALL_FLEET, extra_args=("--config", str(config)))
    done = subprocess.run(
        server.command(),
        cwd=tmp_path,
        env=server.env() | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / ".clusterplane").exists(), "nothing was started or created"


def test_a_bad_flag_value_is_a_start_up_error_too(tmp_path: Path):
    done = run_cli(tmp_path, "serve", "--time-scale", "0")
    assert done.returncode == 2
    assert "simulation.time_scale: must be greater than 0 (from the command line)" in done.stderr


def test_the_server_reads_its_settings_file(tmp_path: Path):
    config = tmp_path / "clusterplane.toml"
    config.write_text('[log]\nformat = "json"\n[server]\ncluster_base_domain = "gpu.example"\n')
    server = ServerProcess(
        tmp_path, fleet=SMALL_FLEET, extra_args=("--config", str(config), "--log-level", "info")
    )
    with server, server.client() as client:
        assert client.get("/v1/whoami").status_code == 200
    lines = [line for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    assert any('"logger": "clusterplane.access"' in line for line in lines)


def test_config_show_prints_sources_and_masks_secrets(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("[server]\nport = 9001\n[health]\ncooldown_seconds = 60\n")
    done = run_cli(
        tmp_path,
        "config",
        "show",
        "--config",
        str(config),
        env={"CLUSTERPLANE_SERVER__PORT": "9002", "CLUSTERPLANE_ADMIN_API_KEY": "a" * 40},
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()}
    assert rows["server.port"] == ["9002", "env"]
    assert rows["health.cooldown_seconds"] == ["60.0", "file"]
    assert rows["admin_api_key"] == ["********", "env"]
    assert rows["credentials.key"] == ["********", "env"]
    assert "a" * 40 not in done.stdout


def test_config_docs_check_fails_on_a_stale_file(tmp_path: Path):
    stale = tmp_path / "configuration.md"
    stale.write_text("# Configuration\n")
    assert run_cli(tmp_path, "config", "docs", "--check", "--output", str(stale)).returncode == 1
    assert run_cli(tmp_path, "config", "docs", "--output", str(stale)).returncode == 0
    assert run_cli(tmp_path, "config", "docs", "--check", "--output", str(stale)).returncode == 0
    assert "CLUSTERPLANE_SERVER__PORT" in stale.read_text()

"""`clusterplane ssh` against a real OpenSSH server that trusts one cluster's SSH CA.

The server is Debian's sshd on loopback (tests/support/sshd.py) with TrustedUserCAKeys set
to the CA public key the operator's API hands out, and no other way in. The CLI signs a
fresh key through the API and connects through the jump host (the same sshd, so the
certificate is checked twice). The engine's clock is put at wall time, because sshd checks
certificate validity against the real clock.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clusterplane.cli.main import parse
from clusterplane.cli.ssh import run
from clusterplane.clock import ManualClock
from tests.support.engine import Engine, make_engine
from tests.support.sshd import SSHD, Sshd

pytestmark = pytest.mark.skipif(
    not SSHD.exists(), reason="needs openssh-server (scripts/ensure-test-tools.sh installs it)"
)

# The remote shell computes the number, so the output proves the command ran over ssh.
REMOTE = ["echo", "logged-in-$((6*7))"]
LOGGED_IN = "logged-in-42"

CREATE = {
    "cluster_name": "ssh",
    "billing_type": "ON_DEMAND",
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "region": "test-1",
    "nvidia_version_id": "cu128-drv570-ubuntu2204",
    "cluster_config": {"load_balancer": "NONE", "ssh_ca_enabled": True, "jumphost_enabled": True},
}


def create(engine: Engine, **overrides: Any) -> str:
    response = engine.client.post(
        "/v1/compute/clusters", json={**CREATE, **overrides}, headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    cluster_id: str = response.json()["cluster_id"]
    return cluster_id


def ssh_ca(engine: Engine, cluster_id: str) -> str:
    response = engine.client.get(
        f"/admin/v1/clusters/{cluster_id}/ssh-ca", headers=engine.headers()
    )
    assert response.status_code == 200, response.text
    key: str = response.json()["public_key"]
    return key


def allow_this_login(engine: Engine, cluster_id: str) -> None:
    response = engine.client.put(
        f"/admin/v1/clusters/{cluster_id}/ssh-policy",
        json={"allowed_logins": [getpass.getuser()]},
        headers=engine.headers(),
    )
    assert response.status_code == 200, response.text


@pytest.fixture
def wall_clock_engine(tmp_path: Path) -> Iterator[Engine]:
    """Fleet time a month ahead; the wall clock a `ManualClock` at real time."""
    for engine in make_engine(tmp_path, wall_clock=ManualClock(datetime.now(UTC))):
        engine.clock.set(datetime.now(UTC) + timedelta(days=30))
        engine.client.headers.update(engine.headers())
        yield engine


@pytest.fixture
def cluster_and_sshd(wall_clock_engine: Engine, tmp_path: Path) -> Iterator[tuple[str, Sshd]]:
    cluster_id = create(wall_clock_engine)
    allow_this_login(wall_clock_engine, cluster_id)
    with Sshd(tmp_path / "sshd", [ssh_ca(wall_clock_engine, cluster_id)]) as sshd:
        yield cluster_id, sshd


def clusterplane_ssh(engine: Engine, tmp_path: Path, cluster_id: str, sshd: Sshd) -> int:
    args = parse(
        [
            "ssh",
            "--login",
            getpass.getuser(),
            "--address",
            "127.0.0.1",
            "--port",
            str(sshd.port),
            "--jumphost",
            f"127.0.0.1:{sshd.port}",
            "--cache-dir",
            str(tmp_path / "cache"),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            cluster_id,
            "--",
            *REMOTE,
        ]
    )
    return run(args, http=engine.client)


def test_a_key_signed_by_the_clusters_ca_logs_in_through_the_jump_host(
    wall_clock_engine: Engine,
    cluster_and_sshd: tuple[str, Sshd],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    cluster_id, sshd = cluster_and_sshd
    assert clusterplane_ssh(wall_clock_engine, tmp_path, cluster_id, sshd) == 0
    assert LOGGED_IN in capfd.readouterr().out
    config = (tmp_path / "cache" / f"{cluster_id}.config").read_text()
    assert "ProxyJump clusterplane-jump" in config
    log = sshd.log_path.read_text()
    assert log.count("Accepted publickey") == 2, "the jump host and the node each checked it"
    assert "ED25519-CERT" in log


def test_an_expired_certificate_does_not_log_in(
    wall_clock_engine: Engine,
    cluster_and_sshd: tuple[str, Sshd],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    cluster_id, sshd = cluster_and_sshd
    wall = wall_clock_engine.wall_clock
    assert isinstance(wall, ManualClock)
    wall.advance(-3 * 3600)  # the server signs for an hour, 3 h ago
    assert clusterplane_ssh(wall_clock_engine, tmp_path, cluster_id, sshd) == 255
    assert LOGGED_IN not in capfd.readouterr().out
    log = sshd.log_path.read_text()
    assert "Certificate invalid: expired" in log
    assert "Accepted publickey" not in log


def test_a_certificate_from_another_clusters_ca_does_not_log_in(
    wall_clock_engine: Engine,
    cluster_and_sshd: tuple[str, Sshd],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _, sshd = cluster_and_sshd
    other = create(wall_clock_engine, cluster_name="other")
    allow_this_login(wall_clock_engine, other)
    assert clusterplane_ssh(wall_clock_engine, tmp_path, other, sshd) == 255
    assert LOGGED_IN not in capfd.readouterr().out
    log = sshd.log_path.read_text()
    assert "Failed publickey" in log and "ED25519-CERT" in log, "presented, then refused"
    assert "Accepted publickey" not in log


def test_after_rotation_the_old_ca_is_no_longer_the_one_that_signs(
    wall_clock_engine: Engine,
    cluster_and_sshd: tuple[str, Sshd],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    cluster_id, sshd = cluster_and_sshd
    old = ssh_ca(wall_clock_engine, cluster_id)
    rotated = wall_clock_engine.client.post(
        f"/admin/v1/clusters/{cluster_id}/credentials/rotate", headers=wall_clock_engine.headers()
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["ssh_ca_public_key"] not in (None, old)
    assert clusterplane_ssh(wall_clock_engine, tmp_path, cluster_id, sshd) == 255
    assert LOGGED_IN not in capfd.readouterr().out


def test_without_a_jump_host_the_key_logs_in_directly(
    wall_clock_engine: Engine, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cluster_id = create(
        wall_clock_engine,
        cluster_name="direct",
        cluster_config={"load_balancer": "NONE", "ssh_ca_enabled": True},
    )
    allow_this_login(wall_clock_engine, cluster_id)
    with Sshd(tmp_path / "sshd", [ssh_ca(wall_clock_engine, cluster_id)]) as sshd:
        args = parse(
            [
                "ssh", "--login", getpass.getuser(), "--address", "127.0.0.1",
                "--port", str(sshd.port), "--cache-dir", str(tmp_path / "cache"),
                "-o", "BatchMode=yes", cluster_id, "--", *REMOTE,
            ]
        )  # fmt: skip
        assert run(args, http=wall_clock_engine.client) == 0
        log = sshd.log_path.read_text()
    assert LOGGED_IN in capfd.readouterr().out
    assert "ProxyJump" not in (tmp_path / "cache" / f"{cluster_id}.config").read_text()
    assert log.count("Accepted publickey") == 1

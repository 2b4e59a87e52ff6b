"""The namespaced test hosts: isolated, connected only to each other, and cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.hosts import HostNetwork, LeftoverError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="test hosts need root (namespaces)")

CONNECT = (
    "import socket,sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()\n"
    "except OSError as exc:\n"
    "    sys.exit(f'refused: {exc}')\n"
)
SERVE = (
    "import socket,sys\n"
    "s=socket.socket(); s.bind((sys.argv[1], 7000)); s.listen(); print('up', flush=True)\n"
    "while True: s.accept()[0].close()\n"
)


def test_hosts_have_their_own_name_and_address_and_no_route_off_the_bridge() -> None:
    with HostNetwork() as network:
        alpha, beta = network.add_host("alpha"), network.add_host("beta")

        assert alpha.run(["hostname"]).stdout.strip() == "alpha"
        assert beta.run(["hostname"]).stdout.strip() == "beta"
        assert f"inet {alpha.address}/24" in alpha.run(["ip", "addr", "show", "eth0"]).stdout
        assert alpha.run(["ip", "route", "show", "default"]).stdout == ""
        off_machine = alpha.run(["ip", "route", "get", "192.0.2.1"], check=False)
        assert off_machine.returncode != 0
        assert "unreachable" in off_machine.stderr
        alpha.run(["touch", f"{network.host_root}/mine"])
        assert alpha.path(f"{network.host_root}/mine").exists()
        assert not beta.path(f"{network.host_root}/mine").exists()


def test_a_cut_link_stops_traffic_between_hosts_until_it_is_restored() -> None:
    with HostNetwork() as network:
        alpha, beta = network.add_host("alpha"), network.add_host("beta")
        server = beta.popen(
            [sys.executable, "-c", SERVE, beta.address], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "up"
            connect = [sys.executable, "-c", CONNECT, beta.address, "7000"]
            assert alpha.run(connect, check=False).returncode == 0

            beta.cut_link()
            assert alpha.run(connect, check=False).returncode != 0
            beta.restore_link()
            deadline = time.monotonic() + 10
            while alpha.run(connect, check=False).returncode != 0:
                assert time.monotonic() < deadline, "no traffic after the link came back"
                time.sleep(0.2)
        finally:
            server.kill()
            server.wait()


def test_two_networks_at_once_get_their_own_bridge_and_subnet() -> None:
    with HostNetwork() as first, HostNetwork() as second:
        assert first.bridge != second.bridge
        assert first.subnet != second.subnet
        assert first.workdir != second.workdir


def test_teardown_kills_a_process_left_running_and_reports_it() -> None:
    network = HostNetwork()
    host = network.add_host("alpha")
    stray = host.popen(["sleep", "300"])
    deadline = time.monotonic() + 10
    comm = Path(f"/proc/{stray.pid}/comm")
    while stray.pid not in host.processes() or comm.read_text().strip() != "sleep":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    workdir, bridge, netns = network.workdir, network.bridge, host.netns

    with pytest.raises(LeftoverError, match=r"process still running at teardown: alpha: sleep"):
        network.close()

    assert stray.wait(timeout=5) != 0
    assert not Path(f"/run/netns/{netns}").exists()
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0
    assert not workdir.exists()

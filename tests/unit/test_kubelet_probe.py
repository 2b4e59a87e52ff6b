"""The worker's kubelet probe: one failed probe says nothing; a grace period of failures
says the kubelet stopped answering; a new kubelet starts with a clean slate."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clusterplane.agent.kubernetes.probe import KubeletProbe


class Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def hung() -> Iterator[int]:
    """A port that accepts connections and never answers, like a stopped kubelet."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_a_kubelet_that_answers_is_healthy(answering: int) -> None:
    assert KubeletProbe(answering).check("127.0.0.1", 0) == {
        "name": "kubelet",
        "ok": True,
        "message": "",
    }


def test_a_kubelet_is_reported_only_once_it_failed_every_probe_for_the_grace_period(
    hung: int,
) -> None:
    probe = KubeletProbe(hung)
    first = probe.check("127.0.0.1", 1.5)
    assert first["ok"] is True and "one probe failed" in first["message"]
    time.sleep(0.6)
    later = probe.check("127.0.0.1", 1.5)
    assert later["ok"] is False and "has not answered its health check" in later["message"]


def test_an_answer_or_a_new_kubelet_clears_the_failures(hung: int, answering: int) -> None:
    probe = KubeletProbe(hung)
    assert probe.check("127.0.0.1", 0)["ok"] is False
    probe.reset()
    assert probe.check("127.0.0.1", 5)["ok"] is True
    probe.port = answering
    assert probe.check("127.0.0.1", 0)["ok"] is True
    probe.port = hung
    assert probe.check("127.0.0.1", 5)["ok"] is True  # the earlier failures are forgotten

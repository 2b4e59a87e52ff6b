"""Whether this host's kubelet answers: the worker's own word on its node daemon.

`KubeletProbe.check(address, grace_seconds)` asks the kubelet's health endpoint
(`KUBELET_HEALTHZ_PORT` on the node's address) and returns the worker report's
`daemon_health`: `{"name": "kubelet", "ok": bool, "message": str}`. One unanswered probe
says nothing (a kubelet starting, a busy moment); the kubelet is reported unhealthy only
once it has failed every probe for `grace_seconds`, the same period after which the
controller-manager holds its node NotReady. The server pairs this with the control plane's
view of the node before it proposes a repair (`services.agents.agent_signals`); a kubelet that
died is not this probe's business, the worker starts it again.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

KUBELET_HEALTHZ_PORT = 10248
PROBE_TIMEOUT = 1.0


class KubeletProbe:
    def __init__(self, port: int = KUBELET_HEALTHZ_PORT) -> None:
        self.port = port
        self._failing_since: float | None = None

    def reset(self) -> None:
        """A new kubelet process: its earlier failures are not its own."""
        self._failing_since = None

    def check(self, address: str, grace_seconds: float) -> dict[str, Any]:
        error = _ask(address, self.port)
        if error is None:
            self._failing_since = None
            return {"name": "kubelet", "ok": True, "message": ""}
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        failing = now - self._failing_since
        if failing < grace_seconds:
            return {"name": "kubelet", "ok": True, "message": f"one probe failed: {error}"}
        return {
            "name": "kubelet",
            "ok": False,
            "message": f"the kubelet has not answered its health check for {failing:.0f} s"
            f" ({error})",
        }


def _ask(address: str, port: int) -> str | None:
    """None when the kubelet says it is healthy, else why not."""
    try:
        response = httpx.get(f"http://{address}:{port}/healthz", timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    return None

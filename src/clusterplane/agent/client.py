"""The agent's side of the HTTP protocol: enroll, pull the assignment, report, send health
and check reports.

Only enrollment carries the join token; every later call is signed (`signing.SignedAuth`).
Errors the server answers in the spec's envelope become `ServerRefused` with its message;
network trouble is httpx's own exception, which the daemon treats as "try again later".
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clusterplane.domain import agent_protocol as wire

from .identity import public_key_text
from .signing import SignedAuth

log = logging.getLogger(__name__)


class ServerRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


def _check(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else response.text
        raise ServerRefused(response.status_code, str(message))
    result: dict[str, Any] = body
    return result


class AgentClient:
    def __init__(
        self,
        server: str,
        key: Ed25519PrivateKey,
        *,
        host_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.key = key
        self.host_id = host_id or ""
        self._http = httpx.Client(
            base_url=server.rstrip("/"),
            timeout=httpx.Timeout(10.0, read=40.0),
            auth=SignedAuth(key, lambda: self.host_id),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def enroll(self, join_token: str, inventory: wire.Inventory) -> dict[str, Any]:
        body = wire.Enrollment(
            join_token=join_token, public_key=public_key_text(self.key), inventory=inventory
        )
        answer = _check(self._http.post("/agent/v1/enroll", json=body.model_dump(mode="json")))
        self.host_id = answer["host_id"]
        return answer

    def _host_path(self, tail: str) -> str:
        return f"/agent/v1/hosts/{self.host_id}/{tail}"

    def assignment(self, after_generation: int) -> tuple[wire.Assignment, float | None]:
        """The assignment once newer than `after_generation` (or the wait is over), and
        how long the server asks to wait before polling again (None: at once)."""
        response = self._http.get(
            self._host_path("assignment"), params={"after_generation": after_generation}
        )
        body = _check(response)
        retry = response.headers.get("retry-after")
        return wire.Assignment.model_validate(body), float(retry) if retry else None

    def report(self, report: wire.StatusReport) -> list[wire.CheckRequest]:
        """Send the status; the answer is the checks the server asks this host to run."""
        answer = _check(
            self._http.post(
                self._host_path("status"), json=report.model_dump(mode="json", exclude_none=True)
            )
        )
        requests: list[wire.CheckRequest] = []
        for doc in answer.get("checks") or []:
            try:
                requests.append(wire.CheckRequest.model_validate(doc))
            except ValueError as exc:
                log.warning("ignoring a check request this agent cannot read: %s", exc)
        return requests

    def check_report(self, report: wire.CheckReport) -> None:
        body = report.model_dump(mode="json")
        _check(self._http.post(self._host_path("check-reports"), json=body))

    def health_events(self, events: list[wire.AgentHealthEvent]) -> list[dict[str, Any]]:
        batch = wire.HealthEventBatch(events=events)
        answer = _check(
            self._http.post(self._host_path("health-events"), json=batch.model_dump(mode="json"))
        )
        results: list[dict[str, Any]] = answer["results"]
        return results

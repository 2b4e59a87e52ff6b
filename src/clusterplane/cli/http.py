"""The HTTP side of the user commands and `clusterplane ssh`: where the API is, who calls
it, and what an error answer says.

The API is found as the official SDK and CLI find it: the base URL is `--base-url`, else
TOGETHER_BASE_URL, else http://127.0.0.1:8080 (a trailing `/v1`, the 2.x SDK habit, is
dropped: paths carry it); the key is `--api-key`, else TOGETHER_API_KEY. `Api.call`
returns the JSON object of a 2xx answer and raises `ApiError` (exit 3, the server's
message and status) for a 4xx, `CliError` (exit 4) for a 5xx or an unreachable server.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import httpx

from clusterplane.cli.exits import API_ERROR, UNAVAILABLE, USAGE, CliError

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
USER_AGENT = "clusterplane-cli"


class ApiError(CliError):
    """The API refused a request (4xx); `status` is its HTTP status."""

    def __init__(self, status: int, message: str, body: object):
        super().__init__(API_ERROR, f"{message} (HTTP {status})", body)
        self.status = status


def base_url(explicit: str | None) -> str:
    base = (explicit or os.environ.get("TOGETHER_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def api_key(explicit: str | None) -> str | None:
    """The key to send, or None when neither `--api-key` nor TOGETHER_API_KEY gives one."""
    return (explicit or os.environ.get("TOGETHER_API_KEY") or "").strip() or None


def error_message(response: httpx.Response) -> str:
    """The message of an error answer: the spec's envelope, the RPC shape, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return str(body)


class Api:
    """One API caller; use as a context manager so its connections are closed."""

    def __init__(
        self,
        base: str,
        key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base = base
        self._http = httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_options(cls, base: str | None, key: str | None) -> Api:
        found = api_key(key)
        if found is None:
            raise CliError(USAGE, "no API key: set TOGETHER_API_KEY or pass --api-key")
        return cls(base_url(base), found)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=clean, json=body)
        except httpx.HTTPError as exc:
            raise CliError(UNAVAILABLE, f"cannot reach {self.base}: {exc}") from None
        if response.status_code >= 500:
            message = error_message(response)
            raise CliError(
                UNAVAILABLE, f"the server failed: {message} (HTTP {response.status_code})"
            )
        if response.status_code >= 400:
            try:
                raw: object = response.json()
            except ValueError:
                raw = None
            raise ApiError(response.status_code, error_message(response), raw)
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            raise CliError(
                UNAVAILABLE, f"the server answered no JSON: {response.text[:200]}"
            ) from None
        return answer

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

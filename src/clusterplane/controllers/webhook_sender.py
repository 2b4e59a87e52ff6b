"""Sends one webhook attempt over HTTP(S), within a hard deadline, to an address it checked.

What it owns: resolving the receiver's name at every attempt, refusing the attempt unless
every address passes the operator's policy (`domain.webhooks.AddressPolicy`), and
connecting to the checked address itself, with the URL's name still sent as `Host` and
as the TLS server name the certificate is verified for. A name that re-resolves to an
internal address between the check and the connection (DNS rebinding) therefore reaches
nothing new. No redirect is followed, no proxy from the environment is used, no
connection is reused, and nothing of the answer but its status is read. The whole
attempt, name lookup included, ends after `timeout_seconds`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from clusterplane import __version__
from clusterplane.domain.webhooks import (
    SIGNATURE_HEADER,
    AddressPolicy,
    AttemptOutcome,
    IPAddress,
    Receiver,
    parse_receiver,
    sign,
)
from clusterplane.errors import InvalidRequest
from clusterplane.services.events.webhook_outbox import Outgoing
from clusterplane.settings import WebhookSettings

MAX_ADDRESSES_TRIED = 3


class Refused(Exception):
    """The receiver may not be called (its address, or its URL under today's policy)."""


def _trusting(ca_file: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidRequest(
            f"webhooks.ca_file: {ca_file} is not a readable PEM file of CAs ({exc})",
            param="webhooks.ca_file",
        ) from None


class Sender:
    def __init__(self, settings: WebhookSettings, policy: AddressPolicy):
        self.timeout = settings.timeout_seconds
        self.policy = policy
        self.connections = max(4, 2 * settings.max_concurrent)
        self.verify: ssl.SSLContext | bool = True
        if settings.ca_file is not None:
            self.verify = _trusting(settings.ca_file)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=self.verify,
            trust_env=False,
            follow_redirects=False,
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=self.connections, max_keepalive_connections=0),
        )

    async def send(
        self, client: httpx.AsyncClient, outgoing: Outgoing, timestamp: int
    ) -> AttemptOutcome:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                status = await self._post(client, outgoing, timestamp)
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except Refused as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except OSError as exc:  # name resolution
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = round((time.monotonic() - started) * 1000)
        return AttemptOutcome(status_code=status, error=error, duration_ms=duration_ms)

    async def _post(self, client: httpx.AsyncClient, outgoing: Outgoing, timestamp: int) -> int:
        try:
            receiver = parse_receiver(outgoing.url, self.policy)
        except InvalidRequest as exc:
            raise Refused(exc.message) from None
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"clusterplane-webhooks/{__version__}",
            "Host": urlsplit(outgoing.url).netloc,
            SIGNATURE_HEADER: sign(outgoing.secret, timestamp, outgoing.body),
            "Clusterplane-Delivery": outgoing.delivery_id,
            "Clusterplane-Event-Id": str(outgoing.event_id),
            "Clusterplane-Event-Kind": outgoing.kind,
        }
        # TLS verifies the certificate for the URL's name, though we connect to an address.
        extensions = {"sni_hostname": receiver.host} if receiver.address is None else {}
        failure: httpx.ConnectError | None = None
        for address in (await self._addresses(receiver))[:MAX_ADDRESSES_TRIED]:
            url = httpx.URL(outgoing.url).copy_with(host=str(address))
            request = client.build_request(
                "POST", url, content=outgoing.body, headers=headers, extensions=extensions
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                failure = exc
                continue
            await response.aclose()
            return response.status_code
        assert failure is not None
        raise failure

    async def _addresses(self, receiver: Receiver) -> list[IPAddress]:
        """The receiver's addresses, each allowed by the policy (else `Refused`)."""
        if receiver.address is not None:
            found: list[IPAddress] = [receiver.address]
        else:
            infos = await asyncio.get_running_loop().getaddrinfo(
                receiver.host, receiver.port, type=socket.SOCK_STREAM
            )
            found = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not found:
            raise Refused(f"{receiver.host} resolves to no address")
        for address in found:
            why = self.policy.refusal(address, scheme=receiver.scheme)
            if why is not None:
                raise Refused(f"{receiver.host} resolves to {why}")
        return found

"""Webhook deliveries, the pure parts: signatures, retry delays, which receivers may be called.

Signature (Stripe's scheme): ``Clusterplane-Signature: t=<unix seconds>,v1=<hex>``, the hex
HMAC-SHA256, under the endpoint's secret, of ``f"{t}.{body}"``. A receiver recomputes it,
compares in constant time and refuses a timestamp far from its clock (a replay).

Retries: after failed attempt n (1-based) the next waits `base * 2**(n-1)`, at most `cap`,
times a random factor in [0.75, 1] so deliveries that failed together do not retry in
lockstep; below the cap each wait is at least 1.5 times the one before.

Receivers (SSRF: a tenant must not make the control plane call internal services):
`https://` URLs without credentials in them. Every address a receiver has (its IP literal
when registered; its resolved addresses again at every attempt, which is what connects)
must be public (`ipaddress`'s `is_global`) or in a network the operator allowed.
Link-local (169.254.0.0/16: cloud metadata; fe80::/10), multicast, unspecified and
reserved addresses are refused whatever the operator allows. Plain `http://` is allowed
only to addresses in the operator's `http_networks` (for example loopback in tests).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlsplit

from clusterplane.errors import InvalidRequest

SIGNATURE_HEADER = "Clusterplane-Signature"
MAX_URL_CHARS = 2048
MAX_ERROR_CHARS = 300
# Attempts kept on a delivery (the most recent): replays never grow a row without bound.
MAX_RECORDED_ATTEMPTS = 50
JITTER_LOW = 0.75
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")
_LOCALHOST = ipaddress.ip_address("127.0.0.1")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DeliveryState(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # The endpoint was deleted before the delivery finished.
    CANCELLED = "cancelled"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def retry_delay(failed_attempts: int, *, base: float, cap: float, jitter: float) -> float:
    """Seconds before the next attempt after `failed_attempts` failures; `jitter` in [0, 1]."""
    exponent = min(max(failed_attempts - 1, 0), 60)
    factor = JITTER_LOW + (1 - JITTER_LOW) * min(max(jitter, 0.0), 1.0)
    return min(base * 2.0**exponent, cap) * factor


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt got: the receiver's status, or why there was none."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def record(self, at: datetime) -> dict[str, object]:
        """The attempt as a delivery keeps it (JSON)."""
        error = self.error
        if error is None and not self.succeeded:
            error = f"the receiver answered {self.status_code}"
        return {
            "at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "duration_ms": self.duration_ms,
            "status_code": self.status_code,
            "error": error[:MAX_ERROR_CHARS] if error else None,
        }


@dataclass(frozen=True)
class Candidate:
    """A due delivery: which endpoint and project (`""`: the fleet's) it belongs to."""

    delivery_id: str
    endpoint_id: str
    project: str


def fair_pick(
    candidates: Sequence[Candidate],
    *,
    want: int,
    busy_endpoints: Mapping[str, int],
    busy_projects: Mapping[str, int],
    per_endpoint: int,
    per_project: int,
) -> list[str]:
    """Up to `want` deliveries to send now, taken round-robin across projects (each in due
    order), none taking an endpoint or a project past its bound of deliveries in flight
    (`busy_*` are those in flight already)."""
    queues: dict[str, deque[Candidate]] = {}
    for candidate in candidates:
        queues.setdefault(candidate.project, deque()).append(candidate)
    endpoints, projects = Counter(busy_endpoints), Counter(busy_projects)
    chosen: list[str] = []
    while queues and len(chosen) < want:
        for project in list(queues):
            queue = queues[project]
            while queue and endpoints[queue[0].endpoint_id] >= per_endpoint:
                queue.popleft()
            if not queue or projects[project] >= per_project:
                del queues[project]
                continue
            pick = queue.popleft()
            chosen.append(pick.delivery_id)
            endpoints[pick.endpoint_id] += 1
            projects[project] += 1
            if len(chosen) == want:
                break
    return chosen


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR texts as networks; a ValueError names a bad one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses receivers may have: public ones, `allowed` and `http` networks."""

    allowed: tuple[IPNetwork, ...] = ()
    http: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress, *, scheme: str) -> str | None:
        """Why a receiver at `address` may not be called over `scheme` (None: it may)."""
        ip = address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        reserved = ip.is_reserved and not ip.is_loopback  # ::1 lies in IPv6's reserved ::/8
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified or reserved:
            return f"{ip} is a link-local, multicast or reserved address"
        plain_ok = any(ip in net for net in self.http)
        if scheme == "http" and not plain_ok:
            return f"{ip} is not in a network allowed plain http (webhooks.http_networks)"
        if ip.is_global or plain_ok or any(ip in net for net in self.allowed):
            return None
        return f"{ip} is not a public address (webhooks.allowed_networks does not include it)"


@dataclass(frozen=True)
class Receiver:
    url: str
    scheme: str
    host: str  # lower-case name or IP text, without brackets
    port: int
    address: IPAddress | None  # the host, when it is an IP literal


def parse_receiver(url: str, policy: AddressPolicy) -> Receiver:
    """A receiver URL checked as far as it can be without resolving a name; 400 otherwise."""
    if len(url) > MAX_URL_CHARS or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise _bad(f"url must be at most {MAX_URL_CHARS} printable characters without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _bad(f"url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise _bad("url must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise _bad("url must not carry credentials; the signature authenticates deliveries")
    if parts.fragment:
        raise _bad("url must not have a #fragment")
    host = (parts.hostname or "").lower().rstrip(".")
    address = _address(host)
    if address is None and _HOSTNAME.fullmatch(host) is None:
        raise _bad("url must name a host (a DNS name or an IP address)")
    checked = address or (_LOCALHOST if _is_localhost(host) else None)
    if checked is not None and (why := policy.refusal(checked, scheme=scheme)) is not None:
        raise _bad(f"url is not allowed: {why}")
    if scheme == "http" and checked is None and not policy.http:
        raise _bad("url must be an https:// URL")
    return Receiver(url, scheme, host, port or (443 if scheme == "https" else 80), address)


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="url")

"""The pure rules of webhooks: signatures, retry delays, receiver addresses, fair picking,
and the catalogue of event kinds that filters and subscriptions are checked against."""

from __future__ import annotations

import ast
import hashlib
import hmac
import ipaddress
import itertools
from pathlib import Path

import pytest

from clusterplane.domain.events import KINDS, check_pattern, matches, selected
from clusterplane.domain.webhooks import (
    AddressPolicy,
    Candidate,
    fair_pick,
    parse_networks,
    parse_receiver,
    retry_delay,
    sign,
)
from clusterplane.errors import InvalidRequest

SRC = Path(__file__).resolve().parents[2] / "src/clusterplane"
LOOPBACK_HTTP = AddressPolicy(http=parse_networks(["127.0.0.0/8"]))


def test_a_signature_is_the_hmac_of_timestamp_dot_body_under_the_secret():
    header = sign("whsec_test", 1_700_000_000, b'{"id": 1}')
    expected = hmac.new(b"whsec_test", b'1700000000.{"id": 1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert sign("whsec_other", 1_700_000_000, b'{"id": 1}') != header


def test_retry_delays_double_with_jitter_up_to_the_cap():
    for jitter in (0.0, 0.5, 1.0):
        delays = [retry_delay(n, base=10, cap=300, jitter=jitter) for n in range(1, 9)]
        growing = [d for d in delays if d < 300 * 0.75]
        assert all(b >= 1.5 * a for a, b in itertools.pairwise(growing))
        assert max(delays) <= 300
    assert retry_delay(1, base=10, cap=300, jitter=1.0) == 10
    assert retry_delay(1, base=10, cap=300, jitter=0.0) == 7.5
    assert retry_delay(3, base=10, cap=300, jitter=1.0) == 40
    assert retry_delay(10_000, base=10, cap=300, jitter=1.0) == 300


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # cloud metadata
        "fe80::1",
        "::ffff:169.254.169.254",
        "224.0.0.1",
        "0.0.0.0",
        "240.0.0.1",
    ],
)
def test_link_local_multicast_and_reserved_addresses_are_refused_even_when_allowed(address: str):
    everything = AddressPolicy(
        allowed=parse_networks(["0.0.0.0/0", "::/0"]), http=parse_networks(["0.0.0.0/0"])
    )
    assert everything.refusal(ipaddress.ip_address(address), scheme="https") is not None


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.5", "127.0.0.1", "100.64.0.1", "::1"])
def test_private_addresses_are_refused_unless_the_operator_allows_their_network(address: str):
    ip = ipaddress.ip_address(address)
    assert AddressPolicy().refusal(ip, scheme="https") is not None
    allowed = AddressPolicy(
        allowed=parse_networks([f"{address}/32" if ip.version == 4 else "::1/128"])
    )
    assert allowed.refusal(ip, scheme="https") is None


def test_public_addresses_need_https_and_plain_http_only_reaches_http_networks():
    public = ipaddress.ip_address("8.8.8.8")
    assert AddressPolicy().refusal(public, scheme="https") is None
    assert AddressPolicy().refusal(public, scheme="http") is not None
    assert LOOPBACK_HTTP.refusal(ipaddress.ip_address("127.0.0.1"), scheme="http") is None
    assert LOOPBACK_HTTP.refusal(public, scheme="http") is not None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "http://example.com/hook",  # no http networks configured
        "https://user:pw@example.com/hook",
        "https://example.com/hook#x",
        "https:///hook",
        "https://exa mple.com/",
        "https://example.com:99999/",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://" + "a" * 2100 + ".com/",
        "https://bad_name.example.com/",
    ],
)
def test_receiver_urls_that_could_reach_inside_or_leak_are_refused(url: str):
    with pytest.raises(InvalidRequest) as refused:
        parse_receiver(url, AddressPolicy())
    assert refused.value.param == "url"


def test_public_https_names_and_addresses_are_accepted_and_parsed():
    named = parse_receiver("https://Hooks.Example.com:8443/in?x=1", AddressPolicy())
    assert (named.host, named.port, named.address) == ("hooks.example.com", 8443, None)
    literal = parse_receiver("https://8.8.8.8/in", AddressPolicy())
    assert literal.port == 443 and str(literal.address) == "8.8.8.8"
    local = parse_receiver("http://127.0.0.1:9000/in", LOOPBACK_HTTP)
    assert local.scheme == "http" and local.port == 9000


def test_fair_picking_takes_projects_in_turn_and_respects_both_bounds():
    backlog = [Candidate(f"a{i}", "ep-a", "A") for i in range(10)]
    other = [Candidate("b0", "ep-b", "B"), Candidate("b1", "ep-b2", "B")]
    picked = fair_pick(
        backlog + other,
        want=10,
        busy_endpoints={},
        busy_projects={},
        per_endpoint=2,
        per_project=4,
    )
    assert picked[:2] == ["a0", "b0"]
    assert set(picked) == {"a0", "a1", "b0", "b1"}
    busy = fair_pick(
        backlog + other,
        want=10,
        busy_endpoints={"ep-a": 2},
        busy_projects={"B": 3},
        per_endpoint=2,
        per_project=4,
    )
    assert busy == ["b0"]


def test_kind_patterns_are_checked_against_the_catalogue():
    assert check_pattern("*") is None
    assert check_pattern("cluster.*") is None
    assert check_pattern("cluster.phase") is None
    for bad in ("cluster", "cluster.phse", "clusters.*", "", ".phase", "x" * 100):
        assert check_pattern(bad) is not None, bad
    assert matches(["cluster.*"], "cluster.deleted")
    assert matches(["*"], "host.quarantined")
    assert not matches(["cluster.phase", "volume.*"], "cluster.deleted")
    assert selected(["cluster.*", "host.returned"]) == [("cluster", None), ("host", "returned")]
    assert selected(["cluster.*", "*"]) == []


def _recorded_kinds() -> set[tuple[str, str]]:
    """(object type, kind) of every `record_event` call in the code with literal values."""
    found: set[tuple[str, str]] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "record_event"):
                continue
            args = {k.arg: k.value for k in node.keywords}
            obj, kind = args.get("object_type"), args.get("kind")
            if isinstance(obj, ast.Constant) and isinstance(kind, ast.Constant):
                found.add((obj.value, kind.value))
    return found


def test_every_event_the_engine_records_is_in_the_catalogue():
    recorded = _recorded_kinds()
    assert len(recorded) > 30, "the scan found the engine's events"
    catalogue = {(obj, kind) for obj, kinds in KINDS.items() for kind in kinds}
    assert recorded - catalogue == set()
    # The catalogue's other kinds are computed at the call (remediation and check outcomes).
    computed = catalogue - recorded
    assert {obj for obj, _ in computed} <= {"remediation", "health_check_run"}

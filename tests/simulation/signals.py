"""Simulation steps about health: agents' signals, members' reviews, the operator clearing.

A signal goes to `POST /admin/v1/health/events` as a node agent would send it, mostly
about a host serving a cluster (so a repair is proposed, approved or rejected here, and
carried out by the engine) and sometimes about an idle one (which the engine quarantines).
Before the final convergence the operator clears what is left: open signals are resolved
and proposals still waiting for a review are rejected, as a person would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.simulation.harness import World

CLUSTERS = "/v1/compute/clusters"
EVENTS = "/admin/v1/health/events"
SIGNALS: list[dict[str, Any]] = [
    {"kind": "xid", "xid_code": 79},
    {"kind": "xid", "xid_code": 48},
    {"kind": "xid", "xid_code": 13},
    {"kind": "thermal"},
    {"kind": "nvlink"},
    {"kind": "heartbeat_loss"},
]
MODES = ["REMEDIATION_MODE_REBOOT_VM", "REMEDIATION_MODE_VM_ONLY", "REMEDIATION_MODE_HOST_AWARE"]


def signal(world: World, _: int) -> None:
    if world.rng.random() < 0.85:
        cid = world.pick_cluster()
        cluster = world.call("GET", f"{CLUSTERS}/{cid}") if cid else None
        if cluster is None or cluster.status_code != 200:
            return
        workers = cluster.json()["gpu_worker_nodes"]
        if not workers:
            return
        host = world.rng.choice(workers)["host_name"]
        if world.rng.random() < 0.2:  # "Fully automatic" for this cluster from now on
            policy = f"/admin/v1/clusters/{cid}/remediation-policy"
            world.call("PUT", policy, json={"auto_approve": True})
    else:
        host = f"test1-r0{world.rng.randint(1, 4)}-0{world.rng.randint(1, 4)}"
    body = {"host_name": host, **world.rng.choice(SIGNALS)}
    response = world.call("POST", EVENTS, json=body)
    world.trace.append(f"signal {body['kind']} {host} -> {response.status_code}")
    if 400 <= response.status_code < 500:  # every report here names a fleet host
        from tests.simulation.harness import SimulationFailure

        raise SimulationFailure(f"a health report got {response.status_code}: {response.text}")


def review(world: World, _: int) -> None:
    """A member looks at a cluster's proposals: approves one (maybe another mode) or
    rejects it; now and then an open signal is reported cleared instead."""
    if world.rng.random() < 0.25:
        open_events = _open_events(world)
        if open_events:
            event = world.rng.choice(open_events)
            response = world.call("POST", f"{EVENTS}/{event['id']}/resolve")
            world.trace.append(f"resolve {event['id'][:8]} -> {response.status_code}")
        return
    proposals = [(cid, rid) for cid in sorted(world.ledger.wanted) for rid in _waiting(world, cid)]
    if not proposals:
        return
    cid, rid = world.rng.choice(proposals)
    action = "approve" if world.rng.random() < 0.7 else "reject"
    body: dict[str, Any] = {}
    if action == "approve" and world.rng.random() < 0.3:
        body["mode"] = world.rng.choice(MODES)
    path = f"{CLUSTERS}/{cid}/instances/-/remediations/{rid}/{action}"
    response = world.call("POST", path, json=body)
    world.trace.append(f"{action} {rid[:8]} -> {response.status_code}")


def _open_events(world: World) -> list[dict[str, Any]]:
    listed = world.call("GET", EVENTS, params={"open": "true"})
    if listed.status_code != 200:  # an injected failure
        return []
    return sorted(listed.json()["events"], key=lambda e: str(e["id"]))


def _waiting(world: World, cid: str) -> list[str]:
    listed = world.call(
        "GET",
        f"{CLUSTERS}/{cid}/instances/-/remediations",
        params={"state": "PENDING_APPROVAL", "page_size": 100},
    )
    if listed.status_code != 200:
        return []
    return sorted(r["id"] for r in listed.json()["remediations"])


def clear(world: World) -> None:
    """The operator's end of the storm: every open signal resolved, every proposal of a
    cluster still wanted rejected."""
    for event in _open_events(world):
        world.call("POST", f"{EVENTS}/{event['id']}/resolve")
    for cid in sorted(world.ledger.wanted) + sorted(world.ledger.bookings):
        for rid in _waiting(world, cid):
            world.call("POST", f"{CLUSTERS}/{cid}/instances/-/remediations/{rid}/reject")

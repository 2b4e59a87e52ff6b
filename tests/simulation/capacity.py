"""Simulation steps about capacity: bookings, capacity pools, preemptible GPUs, volumes.

Each step is what a client or the operator would do, through the public and admin APIs,
with every choice drawn from the world's seeded generator. What a client was told goes in
the world's ledger: a booking (scheduled, reserved, or a cluster in a pool) is wanted
until its window ends, and then wound down by the engine.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.simulation.harness import World

CLUSTERS = "/v1/compute/clusters"
VOLUMES = "/v1/compute/clusters/storage/volumes"
PROJECT_QUOTA_GPUS = 120  # binds now and then: test-1 has 128 H100 GPUs


def set_quota(world: World) -> None:
    """The operator's GPU quota on the simulation's project, set once per seed."""
    response = world.call(
        "PUT",
        f"/admin/v1/projects/{world.project_id}/quota",
        json={"max_gpus": PROJECT_QUOTA_GPUS},
    )
    assert response.status_code == 200, response.text


def book(world: World, number: int) -> None:
    """A SCHEDULED_CAPACITY window a little ahead, or a one-day RESERVED cluster."""
    now = world.clock.now()
    gpus = world.rng.choice([8, 16, 24])
    body: dict[str, Any] = {**world.base_body, "cluster_name": f"b{number}", "num_gpus": gpus}
    if world.rng.random() < 0.7:
        start = now + timedelta(minutes=world.rng.choice([10, 30, 90]))
        end = start + timedelta(minutes=world.rng.choice([60, 120, 240]))
        body.update(
            billing_type="SCHEDULED_CAPACITY",
            reservation_start_time=start.isoformat(),
            reservation_end_time=end.isoformat(),
        )
    else:
        start, end = now, now + timedelta(days=1)
        body.update(billing_type="RESERVED", duration_days=1)
    response = world.call("POST", CLUSTERS, json=body)
    world.trace.append(f"book {body['billing_type'][:5]} {gpus} -> {response.status_code}")
    if response.status_code == 200:
        world.ledger.bookings[response.json()["cluster_id"]] = (start, end)
    elif response.status_code >= 500:
        world.ledger.refused_names.add(body["cluster_name"])


def pool(world: World, number: int) -> None:
    """The operator sets free hosts aside for the project; a cluster then draws from them."""
    listed = world.call("GET", "/admin/v1/fleet/hosts", params={"region": "test-1"})
    if listed.status_code != 200:  # an injected failure
        return
    free = sorted(
        h["name"]
        for h in listed.json()["hosts"]
        if h["region"] == "test-1"
        and h["state"] == "available"
        and not h["cluster_id"]
        and not h.get("capacity_pool_id")
    )
    if not free:
        return
    chosen = world.rng.sample(free, min(len(free), world.rng.choice([1, 2, 3])))
    now = world.clock.now()
    ends = now + timedelta(hours=world.rng.choice([1, 2, 4]))
    body = {
        "name": f"pool-{number}",
        "region": "test-1",
        "gpu_type": "H100_SXM",
        "project_id": world.project_id,
        "starts_at": now.isoformat(),
        "ends_at": ends.isoformat(),
        "host_names": chosen,
    }
    made = world.call("POST", "/admin/v1/capacity/pools", json=body)
    world.trace.append(f"pool {len(chosen)} hosts -> {made.status_code}")
    if made.status_code != 200:
        return
    gpus = 8 * world.rng.choice([1, len(chosen), len(chosen) + 1])
    cluster = {
        **world.base_body,
        "cluster_name": f"p{number}",
        "num_gpus": gpus,
        "capacity_pool_id": made.json()["id"],
    }
    response = world.call("POST", CLUSTERS, json=cluster)
    world.trace.append(f"pool cluster {gpus} -> {response.status_code}")
    if response.status_code == 200:
        world.ledger.bookings[response.json()["cluster_id"]] = (now, ends)
    elif response.status_code >= 500:
        world.ledger.refused_names.add(cluster["cluster_name"])


def preemptible(world: World, _: int) -> None:
    """Ask for (more, fewer or no) preemptible GPUs on top of a cluster."""
    cid = world.pick_cluster()
    if cid is None:
        return
    gpus = world.rng.choice([0, 8, 16, 48])
    response = world.call("PUT", f"{CLUSTERS}/{cid}", json={"num_preemptible_gpus": gpus})
    world.trace.append(f"preemptible {cid[:8]} {gpus} -> {response.status_code}")


def resize_volume(world: World, _: int) -> None:
    """Grow a volume, maybe past what the region has left."""
    if not world.ledger.volumes:
        return
    vid = world.rng.choice(sorted(world.ledger.volumes))
    size = world.rng.choice([4, 16, 48])
    response = world.call("PUT", VOLUMES, json={"volume_id": vid, "size_tib": size})
    world.trace.append(f"resize volume {vid[:8]} {size} -> {response.status_code}")

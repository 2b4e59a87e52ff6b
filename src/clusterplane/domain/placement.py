"""Placement: which free hosts a new cluster (or a scale-up) gets.

Pure and deterministic: the caller (the cluster service) loads the hosts that are
eligible (same region and GPU type, state `available`) and gets back host ids, or a
`CapacityUnavailable` that says what there is. Input order never matters.

Topology is fabric > block > rack. The rules, in order:

1. Never cross fabrics: a cluster's hosts share one InfiniBand fabric.
2. Use the smallest domain that fits: a single rack if any rack has room, else a single
   block, else a single fabric.
3. Best fit: among the domains of that level that fit, take the one with the fewest free
   hosts (ties broken by name), keeping big holes for big clusters.
4. Spanning inside the chosen domain, take whole sub-domains with the most free hosts
   first (so the cluster touches as few blocks, then racks, as possible); the remainder
   is then placed among the sub-domains left by rules 2 and 3 (a single rack if one
   holds it, best-fit).

Scale-up (`choose_additional_hosts`) stays in the cluster's fabric and fills, in order,
the racks the cluster already uses, then other racks of its blocks, then the rest of the
fabric, with rule 4 inside each tier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass

from clusterplane.errors import CapacityUnavailable, InvalidRequest

__all__ = ["FreeHost", "choose_additional_hosts", "choose_hosts"]


@dataclass(frozen=True, slots=True)
class FreeHost:
    """An eligible host and where it sits in the topology."""

    host_id: str
    name: str
    fabric: str
    block: str
    rack: str


_Key = tuple[str, ...]
_KeyFn = Callable[[FreeHost], _Key]


def _fabric_key(host: FreeHost) -> _Key:
    return (host.fabric,)


def _block_key(host: FreeHost) -> _Key:
    return (host.fabric, host.block)


def _rack_key(host: FreeHost) -> _Key:
    return (host.fabric, host.block, host.rack)


def _host_order(host: FreeHost) -> tuple[str, ...]:
    return (host.fabric, host.block, host.rack, host.name, host.host_id)


# Narrowest first: a cluster goes in one rack if it can, else one block, else one fabric.
_LEVELS: tuple[_KeyFn, ...] = (_rack_key, _block_key, _fabric_key)


def choose_hosts(
    free: Iterable[FreeHost],
    count: int,
    *,
    region: str | None = None,
    gpu_type: str | None = None,
) -> tuple[str, ...]:
    """Pick `count` host ids within one fabric, in the smallest domain that fits.

    `region` and `gpu_type` only make the `CapacityUnavailable` message readable.
    """
    hosts = _prepare(free, count)
    chosen = _place(hosts, count, _LEVELS)
    if chosen is None:
        raise CapacityUnavailable(_shortage_message(hosts, count, region, gpu_type))
    return _ids(chosen)


def choose_additional_hosts(
    free: Iterable[FreeHost],
    count: int,
    *,
    existing_fabrics: Set[str],
    existing_blocks: Set[str] = frozenset(),
    existing_racks: Set[str] = frozenset(),
    region: str | None = None,
    gpu_type: str | None = None,
) -> tuple[str, ...]:
    """Pick `count` more host ids for a cluster that already has nodes.

    `existing_*` are the fabric, block and rack names of the cluster's current nodes. With
    no existing fabric this is `choose_hosts`. Otherwise the new hosts come from one of
    those fabrics (the one with the most free hosts in the cluster's racks and blocks),
    preferring the cluster's racks, then its blocks, then the rest of the fabric.
    """
    if not existing_fabrics:
        return choose_hosts(free, count, region=region, gpu_type=gpu_type)
    hosts = _prepare(free, count)
    if count == 0:
        return ()
    fabrics = _group([h for h in hosts if h.fabric in existing_fabrics], _fabric_key)
    fitting = [members for members in fabrics.values() if len(members) >= count]
    if not fitting:
        raise CapacityUnavailable(
            _scale_up_message(hosts, count, existing_fabrics, region, gpu_type)
        )
    fabric = min(fitting, key=lambda g: _nearness(g, existing_blocks, existing_racks))
    chosen = _fill_in_tiers(fabric, count, existing_blocks, existing_racks)
    return _ids(chosen)


# --- helpers ----------------------------------------------------------------------------


def _prepare(free: Iterable[FreeHost], count: int) -> list[FreeHost]:
    if count < 0:
        raise InvalidRequest(f"cannot place a negative number of nodes ({count})")
    hosts = sorted(free, key=_host_order)
    ids = [h.host_id for h in hosts]
    if len(set(ids)) != len(ids):
        raise ValueError("placement input lists the same host id twice")
    return hosts


def _group(hosts: Iterable[FreeHost], key: _KeyFn) -> dict[_Key, list[FreeHost]]:
    groups: dict[_Key, list[FreeHost]] = {}
    for host in hosts:
        groups.setdefault(key(host), []).append(host)
    return groups


def _best_fit_order(group: tuple[_Key, list[FreeHost]]) -> tuple[int, _Key]:
    return (len(group[1]), group[0])


def _place(
    hosts: Sequence[FreeHost], count: int, levels: Sequence[_KeyFn]
) -> list[FreeHost] | None:
    """`count` hosts in the narrowest domain that fits, best-fit; None if none fits.

    `levels` go narrowest first; the last one bounds the placement.
    """
    if count == 0:
        return []
    for level, key in enumerate(levels):
        fitting = [g for g in _group(hosts, key).items() if len(g[1]) >= count]
        if fitting:
            _, members = min(fitting, key=_best_fit_order)
            return _span(members, count, levels[:level])
    return None


def _span(hosts: Sequence[FreeHost], count: int, levels: Sequence[_KeyFn]) -> list[FreeHost]:
    """Take `count` of `hosts` across the broadest of `levels`: biggest groups first.

    Whole groups are taken while none holds the remainder; the remainder then goes where
    `_place` puts it among the groups left, so it lands in one group, narrowest first.
    """
    if not levels:
        return sorted(hosts, key=_host_order)[:count]
    ranked = sorted(_group(hosts, levels[-1]).values(), key=lambda g: (-len(g), _host_order(g[0])))
    chosen: list[FreeHost] = []
    remaining = count
    for index, members in enumerate(ranked):
        if len(members) >= remaining:
            rest = [h for group in ranked[index:] for h in group]
            last = _place(rest, remaining, levels)
            assert last is not None  # ranked[index] alone holds the remainder
            return chosen + last
        chosen.extend(members)
        remaining -= len(members)
    raise AssertionError("_span called with fewer hosts than requested")


def _nearness(hosts: Sequence[FreeHost], blocks: Set[str], racks: Set[str]) -> tuple[int, int, str]:
    """Order candidate fabrics: most free hosts near the cluster, then best fit, then name."""
    near = sum(h.block in blocks or h.rack in racks for h in hosts)
    return (-near, len(hosts), hosts[0].fabric)


def _fill_in_tiers(
    hosts: Sequence[FreeHost], count: int, blocks: Set[str], racks: Set[str]
) -> list[FreeHost]:
    """Fill from the cluster's racks, then its blocks, then anywhere in the fabric."""
    tiers: list[list[FreeHost]] = [[], [], []]
    for host in hosts:
        tiers[0 if host.rack in racks else 1 if host.block in blocks else 2].append(host)
    chosen: list[FreeHost] = []
    for tier in tiers:
        take = min(count - len(chosen), len(tier))
        if take:
            placed = _place(tier, take, _LEVELS)
            assert placed is not None  # the tier lies in one fabric and holds `take`
            chosen.extend(placed)
    return chosen


def _ids(hosts: Iterable[FreeHost]) -> tuple[str, ...]:
    return tuple(h.host_id for h in sorted(hosts, key=_host_order))


def _what(count: int, region: str | None, gpu_type: str | None) -> str:
    text = f"need {count} node{'' if count == 1 else 's'}"
    if gpu_type:
        text += f" of {gpu_type}"
    if region:
        text += f" in {region}"
    return text


def _shortage_message(
    hosts: Sequence[FreeHost], count: int, region: str | None, gpu_type: str | None
) -> str:
    largest = max((len(g) for g in _group(hosts, _fabric_key).values()), default=0)
    return (
        f"{_what(count, region, gpu_type)}; {len(hosts)} available "
        f"(largest single-fabric group: {largest})"
    )


def _scale_up_message(
    hosts: Sequence[FreeHost],
    count: int,
    fabrics: Set[str],
    region: str | None,
    gpu_type: str | None,
) -> str:
    in_fabric = sum(h.fabric in fabrics for h in hosts)
    names = ", ".join(sorted(fabrics))
    return (
        f"{_what(count, region, gpu_type)}; {len(hosts)} available, "
        f"{in_fabric} of them in the cluster's fabric ({names})"
    )

"""Placement: which free hosts a new cluster (or a scale-up) gets.

Pure and deterministic: the caller hands over a snapshot of hosts (usually the free ones
of one region and GPU type) and gets back host ids, or a `CapacityUnavailable` that says
why nothing fits and what there is. Input order never matters.

Only placeable hosts are ever chosen: state `available` and not draining. Any other host
in the snapshot (quarantined, in maintenance, offline, allocated, draining) is counted in
the "no fit" answer and otherwise ignored.

Topology is fabric > block > rack. The rules, in order:

1. Never cross fabrics: a cluster's hosts share one InfiniBand fabric, unless the
   operator's policy allows crossing (`allow_cross_fabric`) and no single fabric fits.
2. Use the smallest domain that fits: a single rack if any rack has room, else a single
   block, else a single fabric (else, when allowed, several fabrics).
3. Fill order, then best fit: fabrics are filled in a fixed order (by name): a cluster goes
   to the first fabric where a domain of that level fits, so free capacity gathers in the
   last fabrics, where the biggest clusters find it. Inside that fabric, best fit: the
   block with the fewest free hosts, then (for a rack) the rack with the fewest free hosts,
   then the name. Clusters go where the fleet is already fullest, keeping big holes for
   big clusters. (Choosing the fullest fabric instead of a fixed order spreads clusters
   over every fabric as their fill levels cross; see docs/performance.md, section 4.)
4. Spanning inside the chosen domain, take whole sub-domains with the most free hosts
   first (so the cluster touches as few blocks, then racks, as possible); the remainder
   is then placed among the sub-domains left by rules 2 and 3 (a single rack if one
   holds it, best-fit).

Scale-up (`choose_additional_hosts`) stays in the cluster's fabric and fills, in order,
the racks the cluster already uses, then other racks of its blocks, then the rest of the
fabric, with rule 4 inside each tier (and, when crossing is allowed and the cluster's
fabrics are full, the rest of the region last).

`PlacementIndex` holds a snapshot as a rack > block > fabric tree with free counts, so a
decision costs about the size of the answer rather than the size of the fleet; a caller
that keeps one across decisions (`take` / `put_back`) places in microseconds on a fleet of
thousands of hosts. `choose_hosts` builds a throw-away index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from itertools import groupby

from clusterplane.domain.enums import HostState
from clusterplane.errors import CapacityUnavailable, InvalidRequest

__all__ = [
    "FreeHost",
    "PlacementIndex",
    "Shortage",
    "choose_additional_hosts",
    "choose_hosts",
]


@dataclass(frozen=True, slots=True)
class FreeHost:
    """A host of the snapshot and where it sits in the topology.

    `state` and `draining` default to a placeable host, so callers that pass only free
    hosts need not set them.
    """

    host_id: str
    name: str
    fabric: str
    block: str
    rack: str
    state: str = HostState.AVAILABLE
    draining: bool = False

    @property
    def placeable(self) -> bool:
        return self.state == HostState.AVAILABLE and not self.draining

    @property
    def why_not_placeable(self) -> str:
        return "draining" if self.draining else self.state


RACK, BLOCK, FABRIC, REGION = 0, 1, 2, 3
_LEVEL_NAMES = ("rack", "block", "fabric", "region")


def _host_order(host: FreeHost) -> tuple[str, str]:
    return (host.name, host.host_id)


class _Domain:
    """A rack, block, fabric or the whole region, with its free hosts counted."""

    __slots__ = ("children", "free", "hosts", "key", "level", "parent")

    def __init__(self, level: int, key: tuple[str, ...], parent: _Domain | None):
        self.level = level
        self.key = key
        self.parent = parent
        self.free = 0
        self.children: dict[str, _Domain] = {}
        self.hosts: dict[str, FreeHost] = {}  # racks only

    def descendants(self, level: int) -> Iterator[_Domain]:
        if self.level == level:
            yield self
            return
        for child in self.children.values():
            yield from child.descendants(level)

    def all_hosts(self) -> Iterator[FreeHost]:
        if self.level == RACK:
            yield from self.hosts.values()
            return
        for child in self.children.values():
            yield from child.all_hosts()


def _fit_order(domain: _Domain) -> tuple[object, ...]:
    """Rule 3: the fabric's name, then the free counts of the block and the domain itself
    (fewest first), then the name."""
    chain: list[_Domain] = []
    node: _Domain | None = domain
    while node is not None and node.level < REGION:
        chain.append(node)
        node = node.parent
    if not chain:  # the whole region: only one
        return (domain.key,)
    fabric, *inner = reversed(chain)
    return (fabric.key, *(d.free for d in inner), domain.key)


def _free(domain: _Domain) -> int:
    return domain.free


def _best_fit(domains: Iterable[_Domain], count: int) -> _Domain | None:
    fitting = [d for d in domains if d.free >= count]
    return min(fitting, key=_fit_order) if fitting else None


def _place_among(pool: list[_Domain], count: int, top: int) -> list[FreeHost] | None:
    """`count` hosts in the narrowest domain under `pool` (domains of level `top`)."""
    for level in range(RACK, top + 1):
        best = _best_fit((d for p in pool for d in p.descendants(level)), count)
        if best is not None:
            return _span(best, count)
    return None


def _span(domain: _Domain, count: int) -> list[FreeHost]:
    """`count` of `domain`'s free hosts: whole biggest children first, then the rest."""
    if domain.level == RACK:
        return sorted(domain.hosts.values(), key=_host_order)[:count]
    ranked = sorted((c for c in domain.children.values() if c.free), key=lambda c: (-c.free, c.key))
    chosen: list[FreeHost] = []
    remaining = count
    for index, child in enumerate(ranked):
        if child.free >= remaining:
            last = _place_among(ranked[index:], remaining, child.level)
            assert last is not None  # `child` alone holds the remainder
            return chosen + last
        chosen.extend(child.all_hosts())
        remaining -= child.free
    raise AssertionError("_span called with fewer free hosts than requested")


@dataclass(frozen=True, slots=True)
class Shortage:
    """Why a request does not fit, and what the snapshot has (for the 4xx message)."""

    requested: int
    free: int
    largest: dict[str, int]  # largest free count per level name: rack, block, fabric
    not_placeable: dict[str, int]  # hosts left out, by reason (draining, offline, ...)
    allow_cross_fabric: bool
    fabrics: tuple[str, ...] = ()  # a scale-up's own fabrics
    in_fabrics: int = 0  # free hosts in those fabrics

    @property
    def code(self) -> str:
        if self.free < self.requested:
            return "insufficient_capacity"
        return "no_fit_in_cluster_fabric" if self.fabrics else "no_single_fabric_fits"

    @property
    def reason(self) -> str:
        if self.free < self.requested:
            return "not enough placeable hosts"
        if self.fabrics:
            return f"the cluster's fabric ({', '.join(self.fabrics)}) has too few free hosts"
        return "no single fabric has enough free hosts and crossing fabrics is not allowed"

    def message(self, region: str | None = None, gpu_type: str | None = None) -> str:
        text = f"need {self.requested} node{'' if self.requested == 1 else 's'}"
        if gpu_type:
            text += f" of {gpu_type}"
        if region:
            text += f" in {region}"
        text += f": {self.reason}; {self.free} available"
        if self.fabrics:
            text += f", {self.in_fabrics} of them in the cluster's fabric"
        text += " (largest free " + ", ".join(f"{k} {v}" for k, v in self.largest.items()) + ")"
        if self.not_placeable:
            parts = ", ".join(f"{n} {why}" for why, n in sorted(self.not_placeable.items()))
            text += f"; not placeable: {parts}"
        return text

    def error(self, region: str | None = None, gpu_type: str | None = None) -> CapacityUnavailable:
        return CapacityUnavailable(self.message(region, gpu_type), code=self.code)


class PlacementIndex:
    """The placeable hosts of a snapshot as a rack > block > fabric tree with free counts.

    Racks are also bucketed by free count, so the best-fit rack is found without scanning
    every rack of the fleet. `take` and `put_back` keep it current as hosts are handed out
    and returned.
    """

    def __init__(
        self,
        hosts: Iterable[FreeHost] = (),
        *,
        allow_cross_fabric: bool = False,
        not_placeable: Mapping[str, int] | None = None,
    ):
        """`not_placeable` adds counts of hosts left out (by reason) that the caller
        did not list, for the "no fit" message."""
        self.allow_cross_fabric = allow_cross_fabric
        self.root = _Domain(REGION, (), None)
        self._hosts: dict[str, FreeHost] = {}
        self._racks: dict[str, _Domain] = {}  # host id -> its rack
        # free count -> fabric -> the racks of that fabric with that many free hosts
        self._racks_by_free: dict[int, dict[_Domain, dict[tuple[str, ...], _Domain]]] = {}
        self.not_placeable: dict[str, int] = {}
        seen: set[str] = set()
        for host in hosts:
            if host.host_id in seen:
                raise ValueError("placement input lists the same host id twice")
            seen.add(host.host_id)
            if host.placeable:
                self._add(host)
            else:
                why = host.why_not_placeable
                self.not_placeable[why] = self.not_placeable.get(why, 0) + 1
        for why, n in (not_placeable or {}).items():
            if n:
                self.not_placeable[why] = self.not_placeable.get(why, 0) + n

    # --- upkeep -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, host_id: object) -> bool:
        return host_id in self._hosts

    def free_by_fabric(self) -> dict[str, int]:
        """Free hosts per fabric (fabrics with none may be left out)."""
        return {name: fabric.free for name, fabric in self.root.children.items()}

    def _rack_for(self, host: FreeHost) -> _Domain:
        node = self.root
        for level, name in ((FABRIC, host.fabric), (BLOCK, host.block), (RACK, host.rack)):
            child = node.children.get(name)
            if child is None:
                child = _Domain(level, (*node.key, name), node)
                node.children[name] = child
            node = child
        return node

    def _rebucket(self, rack: _Domain, old: int) -> None:
        fabric = rack.parent.parent  # type: ignore[union-attr]
        assert fabric is not None
        bucket = self._racks_by_free.get(old)
        if bucket is not None:
            racks = bucket.get(fabric)
            if racks is not None:
                racks.pop(rack.key, None)
                if not racks:
                    del bucket[fabric]
            if not bucket:
                del self._racks_by_free[old]
        if rack.free:
            self._racks_by_free.setdefault(rack.free, {}).setdefault(fabric, {})[rack.key] = rack

    def _add(self, host: FreeHost) -> None:
        rack = self._rack_for(host)
        rack.hosts[host.host_id] = host
        self._hosts[host.host_id] = host
        self._racks[host.host_id] = rack
        node: _Domain | None = rack
        while node is not None:
            node.free += 1
            node = node.parent
        self._rebucket(rack, rack.free - 1)

    def hosts_of(self, host_ids: Iterable[str]) -> list[FreeHost]:
        """The index's hosts of `host_ids` (ids it does not hold are skipped)."""
        return [self._hosts[i] for i in host_ids if i in self._hosts]

    def take(self, host_ids: Iterable[str]) -> None:
        """Hosts handed out (or gone): they are no longer offered. Unknown ids are ignored."""
        for host_id in host_ids:
            rack = self._racks.pop(host_id, None)
            if rack is None:
                continue
            del self._hosts[host_id]
            del rack.hosts[host_id]
            node: _Domain | None = rack
            while node is not None:
                node.free -= 1
                node = node.parent
            self._rebucket(rack, rack.free + 1)

    def put_back(self, hosts: Iterable[FreeHost]) -> None:
        """Hosts free again; ones already held or not placeable are ignored."""
        for host in hosts:
            if host.placeable and host.host_id not in self._hosts:
                self._add(host)

    # --- decisions ----------------------------------------------------------------------

    def choose(
        self, count: int, *, region: str | None = None, gpu_type: str | None = None
    ) -> tuple[str, ...]:
        """`count` host ids in the smallest domain that fits (module rules); raises
        `CapacityUnavailable` (with `Shortage.code`) when nothing fits. `region` and
        `gpu_type` only make its message readable."""
        chosen = self.try_choose(count)
        if chosen is None:
            raise self.shortage(count).error(region, gpu_type)
        return chosen

    def try_choose(self, count: int) -> tuple[str, ...] | None:
        if count < 0:
            raise InvalidRequest(f"cannot place a negative number of nodes ({count})")
        if count == 0:
            return ()
        rack = self._best_rack(count)
        if rack is not None:
            return _ids(_span(rack, count))
        top = REGION if self.allow_cross_fabric else FABRIC
        for level in range(BLOCK, top + 1):
            best = _best_fit(self.root.descendants(level), count)
            if best is not None:
                return _ids(_span(best, count))
        return None

    def _best_rack(self, count: int) -> _Domain | None:
        """`_fit_order` among the racks holding `count`, without sorting every rack: the
        first fabric with one, then its fullest block with one, then its tightest."""
        fitting = [by_fabric for free, by_fabric in self._racks_by_free.items() if free >= count]
        if not fitting:
            return None
        fabric = min((f for by_fabric in fitting for f in by_fabric), key=lambda f: f.key)
        blocks = sorted((b for b in fabric.children.values() if b.free >= count), key=_free)
        for _, level in groupby(blocks, key=_free):
            racks = [r for b in level for r in b.children.values() if r.free >= count]
            if racks:
                return min(racks, key=lambda r: (r.free, r.key))
        raise AssertionError("a fabric listed with a fitting rack has none")

    def shortage(self, count: int) -> Shortage:
        largest = {
            _LEVEL_NAMES[level]: max((d.free for d in self.root.descendants(level)), default=0)
            for level in (RACK, BLOCK, FABRIC)
        }
        return Shortage(
            requested=count,
            free=self.root.free,
            largest=largest,
            not_placeable=dict(self.not_placeable),
            allow_cross_fabric=self.allow_cross_fabric,
        )

    def choose_near(
        self,
        count: int,
        *,
        fabrics: Set[str],
        blocks: Set[str] = frozenset(),
        racks: Set[str] = frozenset(),
        region: str | None = None,
        gpu_type: str | None = None,
    ) -> tuple[str, ...]:
        """`count` more hosts for a cluster on `fabrics` / `blocks` / `racks` (names).

        The fabric is the cluster's one with the most free hosts in its racks and blocks
        (then the tightest fit, then name); inside it the cluster's racks are filled
        first, then its blocks, then the rest of the fabric. When crossing fabrics is
        allowed and none of the cluster's fabrics holds `count`, its fabrics are filled
        first and the rest of the region after.
        """
        if count < 0:
            raise InvalidRequest(f"cannot place a negative number of nodes ({count})")
        if count == 0:
            return ()
        if not fabrics:
            return self.choose(count, region=region, gpu_type=gpu_type)
        own = [f for name, f in self.root.children.items() if name in fabrics]
        fitting = [f for f in own if f.free >= count]
        if fitting:
            fabric = min(fitting, key=lambda f: _nearness(f, blocks, racks))
            tiers = _tiers(fabric.all_hosts(), blocks, racks, fabrics)
        elif self.allow_cross_fabric and self.root.free >= count:
            tiers = _tiers(self._hosts.values(), blocks, racks, fabrics)
        else:
            shortage = self.shortage(count)
            raise Shortage(
                requested=count,
                free=shortage.free,
                largest=shortage.largest,
                not_placeable=shortage.not_placeable,
                allow_cross_fabric=self.allow_cross_fabric,
                fabrics=tuple(sorted(fabrics)),
                in_fabrics=sum(f.free for f in own),
            ).error(region, gpu_type)
        chosen: list[str] = []
        for tier in tiers:
            take = min(count - len(chosen), len(tier))
            if take:
                chosen.extend(
                    PlacementIndex(tier, allow_cross_fabric=self.allow_cross_fabric).choose(take)
                )
        return tuple(sorted(chosen, key=lambda i: _topology_order(self._hosts[i])))


def _nearness(fabric: _Domain, blocks: Set[str], racks: Set[str]) -> tuple[int, int, str]:
    near = sum(h.block in blocks or h.rack in racks for h in fabric.all_hosts())
    return (-near, fabric.free, fabric.key[0])


def _tiers(
    hosts: Iterable[FreeHost], blocks: Set[str], racks: Set[str], fabrics: Set[str]
) -> list[list[FreeHost]]:
    """The cluster's racks, its blocks, its fabrics, then anything else."""
    tiers: list[list[FreeHost]] = [[], [], [], []]
    for host in hosts:
        if host.fabric in fabrics:
            tier = 0 if host.rack in racks else 1 if host.block in blocks else 2
        else:
            tier = 3
        tiers[tier].append(host)
    return tiers


def _topology_order(host: FreeHost) -> tuple[str, ...]:
    return (host.fabric, host.block, host.rack, host.name, host.host_id)


def _ids(hosts: Iterable[FreeHost]) -> tuple[str, ...]:
    return tuple(h.host_id for h in sorted(hosts, key=_topology_order))


def choose_hosts(
    free: Iterable[FreeHost],
    count: int,
    *,
    region: str | None = None,
    gpu_type: str | None = None,
    allow_cross_fabric: bool = False,
) -> tuple[str, ...]:
    """Pick `count` host ids within one fabric, in the smallest domain that fits.

    `region` and `gpu_type` only make the `CapacityUnavailable` message readable.
    """
    index = PlacementIndex(free, allow_cross_fabric=allow_cross_fabric)
    chosen = index.try_choose(count)
    if chosen is None:
        raise index.shortage(count).error(region, gpu_type)
    return chosen


def choose_additional_hosts(
    free: Iterable[FreeHost],
    count: int,
    *,
    existing_fabrics: Set[str],
    existing_blocks: Set[str] = frozenset(),
    existing_racks: Set[str] = frozenset(),
    region: str | None = None,
    gpu_type: str | None = None,
    allow_cross_fabric: bool = False,
) -> tuple[str, ...]:
    """Pick `count` more host ids for a cluster that already has nodes.

    `existing_*` are the fabric, block and rack names of the cluster's current nodes. With
    no existing fabric this is `choose_hosts`. See `PlacementIndex.choose_near`.
    """
    index = PlacementIndex(free, allow_cross_fabric=allow_cross_fabric)
    return index.choose_near(
        count,
        fabrics=existing_fabrics,
        blocks=existing_blocks,
        racks=existing_racks,
        region=region,
        gpu_type=gpu_type,
    )

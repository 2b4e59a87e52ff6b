"""Properties of placement over random fleets and random request sequences (hypothesis).

Checked against a brute-force reading of the rules, not against the implementation:
a sequence of placements never hands out one host twice or an unplaceable host; every
placement lies in one rack if some rack fits, else one block if some block fits, else one
fabric (several only when the policy allows it and no fabric fits); the domain it lies in
is the smallest fitting one (fewest free hosts of that level); "no fit" only when nothing
fits; and a kept index (take / put_back) decides as a fresh one would.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterplane.domain.enums import HostState
from clusterplane.domain.placement import FreeHost, PlacementIndex, choose_hosts
from clusterplane.errors import CapacityUnavailable

UNPLACEABLE = [
    (HostState.QUARANTINED, False),
    (HostState.OFFLINE, False),
    (HostState.MAINTENANCE, False),
    (HostState.ALLOCATED, False),
    (HostState.AVAILABLE, True),  # draining
]


@st.composite
def fleets(draw: st.DrawFn) -> list[FreeHost]:
    """Up to 3 fabrics x 3 blocks x 3 racks of 0-6 hosts, some of them unplaceable."""
    hosts: list[FreeHost] = []
    for f in range(draw(st.integers(1, 3))):
        for b in range(draw(st.integers(1, 3))):
            for r in range(draw(st.integers(1, 3))):
                for i in range(draw(st.integers(0, 6))):
                    name = f"f{f}b{b}r{r}-{i}"
                    state, draining = HostState.AVAILABLE, False
                    if draw(st.integers(0, 5)) == 0:
                        state, draining = draw(st.sampled_from(UNPLACEABLE))
                    hosts.append(FreeHost(name, name, f"f{f}", f"b{b}", f"r{r}", state, draining))
    return draw(st.permutations(hosts))


def _domains(hosts: list[FreeHost], level: str) -> Counter[tuple[str, ...]]:
    keys = {
        "rack": lambda h: (h.fabric, h.block, h.rack),
        "block": lambda h: (h.fabric, h.block),
        "fabric": lambda h: (h.fabric,),
    }[level]
    return Counter(keys(h) for h in hosts)


def fit_key(free: list[FreeHost], key: tuple[str, ...]) -> tuple[object, ...]:
    """Rule 3's order for the domain `key` (fabric, block, rack names, as deep as it is)."""
    blocks = _domains(free, "block")
    racks = _domains(free, "rack")
    if len(key) == 1:
        return key
    if len(key) == 2:
        return (key[0], blocks[key])
    return (key[0], blocks[key[:2]], racks[key])


def check_placement(free: list[FreeHost], chosen: tuple[str, ...], count: int, cross: bool):
    """Assert that `chosen` obeys the rules for `free` (the placeable free hosts)."""
    by_id = {h.host_id: h for h in free}
    assert len(chosen) == len(set(chosen)) == count
    assert set(chosen) <= set(by_id), "chose a host that is not free and placeable"
    picked = [by_id[i] for i in chosen]
    for level in ("rack", "block", "fabric"):
        sizes = _domains(free, level)
        fitting = {key: n for key, n in sizes.items() if n >= count}
        if fitting:
            used = set(_domains(picked, level))
            assert len(used) == 1, f"a {level} fits, but the placement spans {used}"
            # Fill order, then best fit: the first fabric with a fitting domain, in it the
            # fullest block, then the tightest domain.
            assert fit_key(free, used.pop()) == min(fit_key(free, key) for key in fitting)
            return
    assert cross, "no fabric fits, so the placement must have been refused"


@settings(max_examples=400, deadline=None)
@given(
    hosts=fleets(),
    requests=st.lists(st.integers(1, 20), min_size=1, max_size=12),
    cross=st.booleans(),
)
def test_a_sequence_of_placements_never_hands_out_a_host_twice_and_always_obeys_the_rules(
    hosts: list[FreeHost], requests: list[int], cross: bool
):
    index = PlacementIndex(hosts, allow_cross_fabric=cross)
    free = [h for h in hosts if h.placeable]
    handed_out: set[str] = set()
    for count in requests:
        try:
            chosen = index.choose(count)
        except CapacityUnavailable as refused:
            fabrics = _domains(free, "fabric").values()
            if cross:
                assert len(free) < count
                assert refused.code == "insufficient_capacity"
            else:
                assert all(n < count for n in fabrics)
            continue
        check_placement(free, chosen, count, cross)
        assert not handed_out & set(chosen), "a host was handed out twice"
        handed_out |= set(chosen)
        index.take(chosen)
        free = [h for h in free if h.host_id not in handed_out]
    assert len(index) == len(free)


@settings(max_examples=300, deadline=None)
@given(hosts=fleets(), count=st.integers(1, 30))
def test_unplaceable_hosts_are_never_chosen_and_are_counted_in_the_no_fit_answer(
    hosts: list[FreeHost], count: int
):
    placeable = {h.host_id for h in hosts if h.placeable}
    left_out = Counter(h.why_not_placeable for h in hosts if not h.placeable)
    try:
        chosen = choose_hosts(hosts, count)
    except CapacityUnavailable as refused:
        shortage = PlacementIndex(hosts).shortage(count)
        assert shortage.not_placeable == dict(left_out)
        assert shortage.free == len(placeable)
        assert f"{len(placeable)} available" in refused.message
        for why, n in left_out.items():
            assert f"{n} {why}" in refused.message
        return
    assert set(chosen) <= placeable


@settings(max_examples=300, deadline=None)
@given(hosts=fleets(), data=st.data())
def test_a_kept_index_decides_exactly_as_a_fresh_index_of_the_same_hosts(
    hosts: list[FreeHost], data: st.DataObject
):
    kept = PlacementIndex(hosts)
    current = {h.host_id: h for h in hosts if h.placeable}
    for _ in range(data.draw(st.integers(1, 8))):
        if current and data.draw(st.booleans()):
            gone = data.draw(st.lists(st.sampled_from(sorted(current)), max_size=6))
            kept.take(gone)
            for host_id in gone:
                current.pop(host_id, None)
        else:
            back = data.draw(st.lists(st.sampled_from(hosts), max_size=6)) if hosts else []
            kept.put_back(back)
            current.update({h.host_id: h for h in back if h.placeable})
        count = data.draw(st.integers(0, 20))
        fresh = PlacementIndex(current.values())
        assert kept.try_choose(count) == fresh.try_choose(count)
        assert len(kept) == len(current)


@settings(max_examples=300, deadline=None)
@given(hosts=fleets(), count=st.integers(1, 40))
def test_crossing_fabrics_happens_only_when_allowed_and_no_single_fabric_fits(
    hosts: list[FreeHost], count: int
):
    free = [h for h in hosts if h.placeable]
    by_id = {h.host_id: h for h in free}
    try:
        chosen = choose_hosts(hosts, count, allow_cross_fabric=True)
    except CapacityUnavailable:
        assert len(free) < count
        return
    fabrics = {by_id[i].fabric for i in chosen}
    if max(_domains(free, "fabric").values()) >= count:
        assert len(fabrics) == 1
    else:
        # Spanning takes the fabrics with the most free hosts first: as few as possible.
        sizes = sorted(_domains(free, "fabric").values(), reverse=True)
        fewest = next(k for k in range(1, len(sizes) + 1) if sum(sizes[:k]) >= count)
        assert len(fabrics) == fewest
        with pytest.raises(CapacityUnavailable):
            choose_hosts(hosts, count)


def test_a_scale_up_may_leave_its_fabric_only_when_crossing_is_allowed():
    hosts = [FreeHost(f"a{i}", f"a{i}", "f1", "b1", "r1") for i in range(2)] + [
        FreeHost(f"b{i}", f"b{i}", "f2", "b2", "r2") for i in range(4)
    ]
    index = PlacementIndex(hosts)
    with pytest.raises(CapacityUnavailable) as refused:
        index.choose_near(3, fabrics={"f1"}, racks={"r1"})
    assert refused.value.code == "no_fit_in_cluster_fabric"
    crossing = PlacementIndex(hosts, allow_cross_fabric=True)
    chosen = crossing.choose_near(3, fabrics={"f1"}, racks={"r1"})
    assert set(chosen) >= {"a0", "a1"} and len(chosen) == 3

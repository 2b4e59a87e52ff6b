"""Placement: smallest domain first, best fit, never across fabrics, deterministic."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterplane.domain.placement import FreeHost, choose_additional_hosts, choose_hosts
from clusterplane.errors import CapacityUnavailable, InvalidRequest


def _rack(fabric: str, block: str, rack: str, count: int) -> list[FreeHost]:
    return [
        FreeHost(
            host_id=f"{rack}-{i:02d}",
            name=f"{rack}-{i:02d}",
            fabric=fabric,
            block=block,
            rack=rack,
        )
        for i in range(1, count + 1)
    ]


def _by_id(hosts: list[FreeHost]) -> dict[str, FreeHost]:
    return {h.host_id: h for h in hosts}


def _racks_of(chosen: tuple[str, ...], hosts: list[FreeHost]) -> Counter[str]:
    index = _by_id(hosts)
    return Counter(index[i].rack for i in chosen)


def _blocks_of(chosen: tuple[str, ...], hosts: list[FreeHost]) -> set[str]:
    index = _by_id(hosts)
    return {index[i].block for i in chosen}


# --- choose_hosts -----------------------------------------------------------------------


def test_a_cluster_that_fits_in_one_rack_is_placed_in_one_rack() -> None:
    hosts = _rack("f1", "b1", "r1", 3) + _rack("f1", "b1", "r2", 8) + _rack("f2", "b2", "r3", 2)
    chosen = choose_hosts(hosts, 5)
    assert _racks_of(chosen, hosts) == Counter({"r2": 5})


def test_the_rack_with_the_fewest_free_hosts_that_still_fits_is_chosen() -> None:
    hosts = _rack("f1", "b1", "r1", 8) + _rack("f1", "b1", "r2", 4) + _rack("f1", "b1", "r3", 6)
    assert _racks_of(choose_hosts(hosts, 4), hosts) == Counter({"r2": 4})
    assert _racks_of(choose_hosts(hosts, 5), hosts) == Counter({"r3": 5})


def test_fabrics_are_filled_in_name_order_so_free_capacity_gathers_in_the_last() -> None:
    hosts = _rack("f1", "b1", "r1", 8) + _rack("f1", "b2", "r2", 4) + _rack("f2", "b3", "r3", 6)
    # f1 holds 5 (in r1), so f2's tighter rack r3 is kept for later.
    assert _racks_of(choose_hosts(hosts, 5), hosts) == Counter({"r1": 5})
    assert _racks_of(choose_hosts(hosts, 9), hosts) == Counter({"r1": 8, "r2": 1})


def test_inside_a_fabric_the_fullest_block_comes_before_the_tightest_rack() -> None:
    hosts = (
        _rack("f1", "b1", "r1", 3)  # b1: 3 free, but r1 is the tightest rack for 3
        + _rack("f1", "b2", "r2", 5)
        + _rack("f1", "b2", "r3", 1)  # b2: 6 free
    )
    assert _racks_of(choose_hosts(hosts, 3), hosts) == Counter({"r1": 3})
    hosts = _rack("f1", "b1", "r1", 6) + _rack("f1", "b2", "r2", 4) + _rack("f1", "b2", "r3", 4)
    # b1 (6 free) is fuller than b2 (8 free): r1 wins over the tighter r2.
    assert _racks_of(choose_hosts(hosts, 4), hosts) == Counter({"r1": 4})


def test_equally_good_racks_are_broken_by_name() -> None:
    hosts = _rack("f1", "b1", "r2", 4) + _rack("f1", "b1", "r1", 4)
    assert choose_hosts(hosts, 2) == ("r1-01", "r1-02")


def test_hosts_inside_a_rack_are_taken_in_name_order() -> None:
    hosts = _rack("f1", "b1", "r1", 8)
    assert choose_hosts(list(reversed(hosts)), 3) == ("r1-01", "r1-02", "r1-03")


def test_a_cluster_too_big_for_any_rack_stays_in_one_block() -> None:
    hosts = (
        _rack("f1", "b1", "r1", 4)
        + _rack("f1", "b1", "r2", 4)
        + _rack("f1", "b2", "r3", 6)
        + _rack("f1", "b2", "r4", 1)
    )
    # No rack holds 7; both blocks do, and b2 (7 free) is a tighter fit than b1 (8).
    assert _racks_of(choose_hosts(hosts, 7), hosts) == Counter({"r3": 6, "r4": 1})


def test_the_block_with_the_fewest_free_hosts_that_fits_is_chosen() -> None:
    hosts = (
        _rack("f1", "b1", "r1", 4)
        + _rack("f1", "b1", "r2", 4)
        + _rack("f1", "b2", "r3", 3)
        + _rack("f1", "b2", "r4", 3)
    )
    assert _blocks_of(choose_hosts(hosts, 6), hosts) == {"b2"}


def test_spanning_racks_fills_the_fullest_racks_first_to_touch_few_racks() -> None:
    hosts = (
        _rack("f1", "b1", "r1", 2)
        + _rack("f1", "b1", "r2", 2)
        + _rack("f1", "b1", "r3", 2)
        + _rack("f1", "b1", "r4", 5)
    )
    assert _racks_of(choose_hosts(hosts, 7), hosts) == Counter({"r4": 5, "r1": 2})


def test_the_remainder_of_a_spanning_cluster_goes_to_the_tightest_rack_that_holds_it() -> None:
    hosts = _rack("f1", "b1", "r1", 6) + _rack("f1", "b1", "r2", 5) + _rack("f1", "b1", "r3", 2)
    # r1 is taken whole, the remaining 2 fit r3 exactly, leaving r2 intact.
    assert _racks_of(choose_hosts(hosts, 8), hosts) == Counter({"r1": 6, "r3": 2})


def test_a_cluster_too_big_for_any_block_spans_blocks_of_one_fabric() -> None:
    hosts = (
        _rack("f1", "b1", "r1", 4)
        + _rack("f1", "b2", "r2", 4)
        + _rack("f1", "b3", "r3", 4)
        + _rack("f2", "b4", "r4", 6)
    )
    chosen = choose_hosts(hosts, 10)
    index = _by_id(hosts)
    assert {index[i].fabric for i in chosen} == {"f1"}
    assert len(chosen) == 10


def test_a_cluster_never_crosses_fabrics_even_when_the_region_has_room() -> None:
    hosts = _rack("f1", "b1", "r1", 3) + _rack("f2", "b2", "r2", 3)
    with pytest.raises(CapacityUnavailable) as caught:
        choose_hosts(hosts, 5, region="us-central-8", gpu_type="H100_SXM")
    assert caught.value.message == (
        "need 5 nodes of H100_SXM in us-central-8: no single fabric has enough free hosts "
        "and crossing fabrics is not allowed; 6 available (largest free rack 3, block 3, "
        "fabric 3)"
    )
    assert caught.value.code == "no_single_fabric_fits"


def test_the_capacity_message_reads_well_without_region_and_gpu_type() -> None:
    with pytest.raises(CapacityUnavailable) as caught:
        choose_hosts([], 1)
    assert caught.value.message == (
        "need 1 node: not enough placeable hosts; 0 available "
        "(largest free rack 0, block 0, fabric 0)"
    )
    assert caught.value.code == "insufficient_capacity"


def test_asking_for_zero_hosts_returns_none() -> None:
    assert choose_hosts(_rack("f1", "b1", "r1", 2), 0) == ()


def test_asking_for_a_negative_number_of_hosts_is_invalid() -> None:
    with pytest.raises(InvalidRequest):
        choose_hosts(_rack("f1", "b1", "r1", 2), -1)


def test_a_host_listed_twice_is_a_caller_bug() -> None:
    host = _rack("f1", "b1", "r1", 1)[0]
    with pytest.raises(ValueError, match="same host id twice"):
        choose_hosts([host, host], 1)


def test_the_result_does_not_depend_on_input_order() -> None:
    hosts = _rack("f1", "b1", "r1", 3) + _rack("f1", "b2", "r2", 3) + _rack("f1", "b2", "r3", 3)
    assert choose_hosts(hosts, 5) == choose_hosts(list(reversed(hosts)), 5)


# --- choose_additional_hosts ------------------------------------------------------------


def test_scale_up_stays_in_the_clusters_fabric_even_if_another_has_a_better_rack() -> None:
    hosts = _rack("f1", "b1", "r1", 2) + _rack("f1", "b2", "r2", 2) + _rack("f2", "b3", "r3", 4)
    chosen = choose_additional_hosts(hosts, 4, existing_fabrics={"f1"})
    assert _racks_of(chosen, hosts) == Counter({"r1": 2, "r2": 2})


def test_scale_up_fills_the_clusters_own_racks_first() -> None:
    hosts = _rack("f1", "b1", "r1", 8) + _rack("f1", "b1", "r2", 2)
    chosen = choose_additional_hosts(
        hosts, 3, existing_fabrics={"f1"}, existing_blocks={"b1"}, existing_racks={"r2"}
    )
    assert _racks_of(chosen, hosts) == Counter({"r2": 2, "r1": 1})


def test_scale_up_prefers_the_clusters_blocks_over_the_rest_of_the_fabric() -> None:
    hosts = _rack("f1", "b1", "r1", 4) + _rack("f1", "b2", "r2", 3)
    chosen = choose_additional_hosts(
        hosts, 3, existing_fabrics={"f1"}, existing_blocks={"b1"}, existing_racks={"r9"}
    )
    assert _blocks_of(chosen, hosts) == {"b1"}


def test_scale_up_spills_from_the_clusters_block_into_the_rest_of_the_fabric() -> None:
    hosts = _rack("f1", "b1", "r1", 2) + _rack("f1", "b2", "r2", 8) + _rack("f1", "b3", "r3", 3)
    chosen = choose_additional_hosts(hosts, 5, existing_fabrics={"f1"}, existing_blocks={"b1"})
    assert _racks_of(chosen, hosts) == Counter({"r1": 2, "r3": 3})


def test_scale_up_without_existing_nodes_is_an_ordinary_placement() -> None:
    hosts = _rack("f1", "b1", "r1", 8) + _rack("f2", "b2", "r2", 4)
    assert choose_additional_hosts(hosts, 4, existing_fabrics=set()) == choose_hosts(hosts, 4)


def test_scale_up_beyond_the_clusters_fabric_is_capacity_unavailable() -> None:
    hosts = _rack("f1", "b1", "r1", 2) + _rack("f2", "b2", "r2", 8)
    with pytest.raises(CapacityUnavailable) as caught:
        choose_additional_hosts(
            hosts, 3, existing_fabrics={"f1"}, region="us-west-2", gpu_type="B200_SXM"
        )
    assert caught.value.message == (
        "need 3 nodes of B200_SXM in us-west-2: the cluster's fabric (f1) has too few free "
        "hosts; 10 available, 2 of them in the cluster's fabric "
        "(largest free rack 8, block 8, fabric 8)"
    )
    assert caught.value.code == "no_fit_in_cluster_fabric"


def test_scale_up_by_zero_returns_none() -> None:
    assert choose_additional_hosts([], 0, existing_fabrics={"f1"}) == ()


# --- properties -------------------------------------------------------------------------


@st.composite
def _fleets(draw: st.DrawFn) -> list[FreeHost]:
    """Free hosts over up to 2 fabrics x 2 blocks x 3 racks, with unique ids."""
    hosts: list[FreeHost] = []
    for fabric in ("f1", "f2")[: draw(st.integers(1, 2))]:
        for block in ("b1", "b2")[: draw(st.integers(1, 2))]:
            for rack in ("r1", "r2", "r3")[: draw(st.integers(1, 3))]:
                size = draw(st.integers(0, 8))
                hosts += _rack(fabric, f"{fabric}{block}", f"{fabric}{block}{rack}", size)
    return draw(st.permutations(hosts))


@settings(max_examples=300, deadline=None)
@given(hosts=_fleets(), count=st.integers(0, 40))
def test_placement_returns_exactly_count_distinct_hosts_of_one_fabric(
    hosts: list[FreeHost], count: int
) -> None:
    index = _by_id(hosts)
    try:
        chosen = choose_hosts(hosts, count)
    except CapacityUnavailable:
        fabric_sizes = Counter(h.fabric for h in hosts)
        assert all(size < count for size in fabric_sizes.values())
        return
    assert len(chosen) == count
    assert len(set(chosen)) == count
    assert set(chosen) <= set(index)
    assert len({index[i].fabric for i in chosen}) <= 1


@settings(max_examples=300, deadline=None)
@given(hosts=_fleets(), count=st.integers(1, 10))
def test_placement_picks_a_single_rack_whenever_some_rack_fits(
    hosts: list[FreeHost], count: int
) -> None:
    rack_sizes = Counter((h.fabric, h.block, h.rack) for h in hosts)
    if max(rack_sizes.values(), default=0) < count:
        return
    index = _by_id(hosts)
    chosen = choose_hosts(hosts, count)
    racks = {(index[i].fabric, index[i].block, index[i].rack) for i in chosen}
    assert len(racks) == 1
    fabric = min(f for (f, _, _), size in rack_sizes.items() if size >= count)
    in_fabric = {key: n for key, n in rack_sizes.items() if key[0] == fabric and n >= count}
    block_sizes = Counter((h.fabric, h.block) for h in hosts)
    best = min((block_sizes[key[:2]], n) for key, n in in_fabric.items())
    rack = racks.pop()
    assert (block_sizes[rack[:2]], rack_sizes[rack]) == best


@settings(max_examples=200, deadline=None)
@given(hosts=_fleets(), count=st.integers(0, 40), data=st.data())
def test_placement_is_the_same_for_any_order_of_the_same_hosts(
    hosts: list[FreeHost], count: int, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(hosts))
    try:
        expected = choose_hosts(hosts, count)
    except CapacityUnavailable:
        with pytest.raises(CapacityUnavailable):
            choose_hosts(shuffled, count)
        return
    assert choose_hosts(shuffled, count) == expected


@settings(max_examples=300, deadline=None)
@given(hosts=_fleets(), count=st.integers(0, 30), data=st.data())
def test_scale_up_returns_distinct_hosts_inside_the_clusters_fabric(
    hosts: list[FreeHost], count: int, data: st.DataObject
) -> None:
    fabric = data.draw(st.sampled_from(["f1", "f2"]))
    racks = set(data.draw(st.lists(st.sampled_from(sorted({h.rack for h in hosts} or {"x"})))))
    index = _by_id(hosts)
    try:
        chosen = choose_additional_hosts(
            hosts, count, existing_fabrics={fabric}, existing_racks=racks
        )
    except CapacityUnavailable:
        assert sum(h.fabric == fabric for h in hosts) < count
        return
    assert len(chosen) == len(set(chosen)) == count
    assert {index[i].fabric for i in chosen} <= {fabric}
    in_racks = sum(h.rack in racks and h.fabric == fabric for h in hosts)
    assert sum(index[i].rack in racks for i in chosen) == min(count, in_racks)

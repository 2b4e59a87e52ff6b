"""The fleet file: shape validation, expansion into hosts, and the shipped fleets."""

from __future__ import annotations

import copy
import ipaddress
from importlib import resources
from typing import Any

import pytest
import yaml

from clusterplane.domain.enums import GpuType
from clusterplane.domain.fleet import (
    Fleet,
    HostSpec,
    parse_fleet,
    region_short_name,
    supported_instance_types,
)
from clusterplane.errors import InvalidRequest

H100: dict[str, Any] = {
    "gpu_type": "H100_SXM",
    "num_gpus": 8,
    "num_cpu_cores": 208,
    "memory_gib": 2048,
    "ib_hca_count": 8,
    "ib_hca_type": "ConnectX-7 NDR 400Gb/s",
    "nvswitch_count": 4,
    "nvswitch_type": "NVSwitch gen3",
    "ephemeral_storage": "28Ti",
}
DRIVER = {
    "id": "cu128-drv570-ubuntu2204",
    "cuda_version": "12.8",
    "nvidia_driver_version": "570",
    "os": "ubuntu-22.04",
}


def _rack(name: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "hosts": list(entries)}


def _fabric(name: str, block: str, *racks: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "blocks": [{"name": block, "racks": list(racks)}]}


def _fleet_data() -> dict[str, Any]:
    """The example of the module docstring, plus a second fabric and a second region."""
    first_rack = _rack(
        "r01", {"profile": "h100", "count": 4}, {"name": "special-host", "profile": "h100"}
    )
    central = {
        "name": "us-central-8",
        "network": "10.8.0.0/16",
        "control_plane": {"nodes_per_cluster": 3, "num_cpu_cores": 16, "memory_gib": 64},
        "driver_versions": [DRIVER],
        "fabrics": [
            _fabric("ib-a", "b1", first_rack),
            _fabric("ib-b", "b1", _rack("r02", {"profile": "l40", "count": 2})),
        ],
    }
    north = {
        "name": "eu-north-1",
        "network": "10.16.0.0/30",
        "driver_versions": [DRIVER],
        "fabrics": [_fabric("ib-a", "b1", _rack("r01", {"profile": "h100", "count": 2}))],
    }
    profiles = {"h100": H100, "l40": {**H100, "gpu_type": "L40_PCIE"}}
    return copy.deepcopy({"profiles": profiles, "regions": [central, north]})


def _first_rack(data: dict[str, Any]) -> dict[str, Any]:
    rack: dict[str, Any] = data["regions"][0]["fabrics"][0]["blocks"][0]["racks"][0]
    return rack


def _invalid(data: object) -> str:
    with pytest.raises(InvalidRequest) as caught:
        parse_fleet(data)
    return caught.value.message


def _load_shipped(name: str) -> Fleet:
    text = resources.files("clusterplane").joinpath(f"fleets/{name}.yaml").read_text()
    return parse_fleet(yaml.safe_load(text))


# --- expansion --------------------------------------------------------------------------


def test_hosts_come_out_in_file_order_with_generated_and_explicit_names() -> None:
    fleet = parse_fleet(_fleet_data())
    assert [h.name for h in fleet.hosts] == [
        "uscentral8-r01-01",
        "uscentral8-r01-02",
        "uscentral8-r01-03",
        "uscentral8-r01-04",
        "special-host",
        "uscentral8-r02-01",
        "uscentral8-r02-02",
        "eunorth1-r01-01",
        "eunorth1-r01-02",
    ]


def test_a_host_carries_its_profile_and_its_place_in_the_topology() -> None:
    host = parse_fleet(_fleet_data()).hosts[5]
    assert host == HostSpec(
        name="uscentral8-r02-01",
        region="us-central-8",
        fabric="ib-b",
        block="b1",
        rack="r02",
        gpu_type=GpuType.L40_PCIE,
        num_gpus=8,
        num_cpu_cores=208,
        memory_gib=2048.0,
        ib_hca_count=8,
        ib_hca_type="ConnectX-7 NDR 400Gb/s",
        nvswitch_count=4,
        nvswitch_type="NVSwitch gen3",
        ephemeral_storage="28Ti",
        ip_address="10.8.0.6",
    )


def test_addresses_are_drawn_in_order_skipping_the_network_address() -> None:
    fleet = parse_fleet(_fleet_data())
    central = [h.ip_address for h in fleet.hosts_in_region("us-central-8")]
    assert central == [f"10.8.0.{i}" for i in range(1, 8)]
    assert [h.ip_address for h in fleet.hosts_in_region("eu-north-1")] == [
        "10.16.0.1",
        "10.16.0.2",
    ]


def test_parsing_the_same_file_twice_gives_the_same_fleet() -> None:
    assert parse_fleet(_fleet_data()) == parse_fleet(_fleet_data())


def test_generated_numbers_count_only_generated_hosts_of_the_rack() -> None:
    data = _fleet_data()
    _first_rack(data)["hosts"].append({"profile": "h100", "count": 2})
    names = [h.name for h in parse_fleet(data).hosts_in_region("us-central-8") if h.rack == "r01"]
    assert names[4:] == ["special-host", "uscentral8-r01-05", "uscentral8-r01-06"]


def test_profile_hardware_fields_other_than_the_gpus_are_optional() -> None:
    data = _fleet_data()
    data["profiles"]["l40"] = {
        "gpu_type": "L40_PCIE",
        "num_gpus": 8,
        "num_cpu_cores": 128,
        "memory_gib": 1024,
    }
    host = parse_fleet(data).hosts[5]
    assert (host.ib_hca_count, host.nvswitch_count, host.ephemeral_storage) == (0, 0, "0")


def test_region_lookup_finds_a_region_by_name_or_returns_none() -> None:
    fleet = parse_fleet(_fleet_data())
    region = fleet.region("eu-north-1")
    assert region is not None
    assert region.network == ipaddress.IPv4Network("10.16.0.0/30")
    assert region.control_plane.nodes_per_cluster == 3  # the default
    assert fleet.region("mars-1") is None


def test_supported_instance_types_are_the_sorted_gpu_types_of_a_region() -> None:
    fleet = parse_fleet(_fleet_data())
    assert supported_instance_types("us-central-8", fleet.hosts) == ["H100_SXM", "L40_PCIE"]
    region = fleet.region("eu-north-1")
    assert region is not None
    assert supported_instance_types(region, fleet.hosts) == ["H100_SXM"]
    assert supported_instance_types("mars-1", fleet.hosts) == []


def test_a_region_short_name_drops_everything_but_letters_and_digits() -> None:
    assert region_short_name("us-central-8") == "uscentral8"
    assert region_short_name("eu_north.1") == "eunorth1"


# --- validation -------------------------------------------------------------------------


def test_an_unknown_profile_is_reported_with_the_path_of_the_host_entry() -> None:
    data = _fleet_data()
    data["regions"][0]["fabrics"][1]["blocks"][0]["racks"][0]["hosts"][0]["profile"] = "h1000"
    assert _invalid(data) == (
        "regions[0].fabrics[1].blocks[0].racks[0].hosts[0]: unknown profile 'h1000'"
    )


def test_a_gpu_type_that_is_not_a_known_gpu_type_is_rejected() -> None:
    data = _fleet_data()
    data["profiles"]["h100"] = {**H100, "gpu_type": "H100_PCIE"}
    assert _invalid(data).startswith("profiles.h100.gpu_type: Input should be")


def test_an_explicit_name_that_collides_with_a_generated_one_is_a_duplicate() -> None:
    data = _fleet_data()
    _first_rack(data)["hosts"][1]["name"] = "uscentral8-r01-02"
    assert _invalid(data) == (
        "regions[0].fabrics[0].blocks[0].racks[0].hosts[1]: duplicate host name "
        "'uscentral8-r01-02' (also at regions[0].fabrics[0].blocks[0].racks[0].hosts[0])"
    )


def test_host_names_must_be_unique_across_regions() -> None:
    data = _fleet_data()
    data["regions"][1]["fabrics"][0]["blocks"][0]["racks"][0]["hosts"] = [
        {"name": "special-host", "profile": "h100"}
    ]
    assert "duplicate host name 'special-host'" in _invalid(data)


def test_a_rack_name_used_twice_in_a_region_is_rejected() -> None:
    data = _fleet_data()
    data["regions"][0]["fabrics"][1]["blocks"][0]["racks"][0]["name"] = "r01"
    assert _invalid(data) == (
        "regions[0].fabrics[1].blocks[0].racks[0].name: duplicate rack name 'r01' "
        "(also at regions[0].fabrics[0].blocks[0].racks[0])"
    )


def test_the_same_rack_name_in_two_regions_is_fine() -> None:
    fleet = parse_fleet(_fleet_data())
    assert {h.region for h in fleet.hosts if h.rack == "r01"} == {"us-central-8", "eu-north-1"}


@pytest.mark.parametrize(
    ("level", "message"),
    [("fabrics", "duplicate fabric name 'ib-a'"), ("blocks", "duplicate block name 'b1'")],
)
def test_duplicate_fabric_and_block_names_are_rejected(level: str, message: str) -> None:
    data = _fleet_data()
    region = data["regions"][0]
    if level == "fabrics":
        region["fabrics"][1]["name"] = "ib-a"
        path = "regions[0].fabrics[1].name"
    else:
        blocks = region["fabrics"][0]["blocks"]
        blocks.append({"name": "b1", "racks": []})
        path = "regions[0].fabrics[0].blocks[1].name"
    assert _invalid(data) == f"{path}: {message}"


def test_a_network_too_small_for_its_hosts_is_rejected() -> None:
    data = _fleet_data()
    data["regions"][1]["fabrics"][0]["blocks"][0]["racks"][0]["hosts"][0]["count"] = 3
    assert _invalid(data) == (
        "regions[1].network: network 10.16.0.0/30 has 2 host addresses; "
        "region 'eu-north-1' has 3 hosts"
    )


def test_overlapping_region_networks_are_rejected() -> None:
    data = _fleet_data()
    data["regions"][1]["network"] = "10.8.4.0/24"
    assert _invalid(data) == (
        "regions[1].network: 10.8.4.0/24 overlaps 10.8.0.0/16 of region 'us-central-8'"
    )


def test_a_network_with_host_bits_set_is_rejected() -> None:
    data = _fleet_data()
    data["regions"][0]["network"] = "10.8.0.1/16"
    assert _invalid(data).startswith("regions[0].network: '10.8.0.1/16' is not an IPv4 network")


def test_duplicate_driver_ids_in_a_region_are_rejected() -> None:
    data = _fleet_data()
    data["regions"][0]["driver_versions"] = [DRIVER, {**DRIVER, "os": "ubuntu-24.04"}]
    assert _invalid(data) == (
        "regions[0].driver_versions[1].id: duplicate driver version id 'cu128-drv570-ubuntu2204'"
    )


def test_an_unquoted_cuda_version_is_rejected_rather_than_mangled() -> None:
    data = _fleet_data()
    data["regions"][0]["driver_versions"] = [{**DRIVER, "cuda_version": 12.8}]
    assert "regions[0].driver_versions[0].cuda_version: write the version as a quoted" in (
        _invalid(data)
    )


def test_duplicate_region_names_are_rejected() -> None:
    data = _fleet_data()
    data["regions"][1]["name"] = "us-central-8"
    assert _invalid(data) == "regions[1].name: duplicate region name 'us-central-8'"


def test_a_missing_field_is_reported_with_its_path() -> None:
    data = _fleet_data()
    data["profiles"]["h100"] = {k: v for k, v in H100.items() if k != "num_gpus"}
    assert _invalid(data) == "profiles.h100.num_gpus: Field required"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("profiles", "h100", "num_gpus"), -8),
        (("profiles", "h100", "ib_hca_count"), -1),
        (("profiles", "h100", "memory_gib"), 0),
    ],
)
def test_negative_or_zero_sizes_are_rejected(path: tuple[str, ...], value: int) -> None:
    data = _fleet_data()
    data[path[0]][path[1]] = {**data[path[0]][path[1]], path[2]: value}
    assert _invalid(data).startswith(".".join(path) + ": Input should be greater than")


def test_a_host_count_below_one_is_rejected_with_the_entry_path() -> None:
    data = _fleet_data()
    _first_rack(data)["hosts"][0]["count"] = -2
    assert _invalid(data).startswith(
        "regions[0].fabrics[0].blocks[0].racks[0].hosts[0].count: Input should be greater"
    )


def test_a_count_written_as_a_string_is_rejected() -> None:
    data = _fleet_data()
    _first_rack(data)["hosts"][0]["count"] = "4"
    assert "hosts[0].count: Input should be a valid integer" in _invalid(data)


def test_an_explicit_name_with_a_count_above_one_is_rejected() -> None:
    data = _fleet_data()
    _first_rack(data)["hosts"][1]["count"] = 2
    assert _invalid(data) == (
        "regions[0].fabrics[0].blocks[0].racks[0].hosts[1]: "
        "an explicit 'name' names one host; drop 'count'"
    )


def test_unknown_keys_are_rejected_so_that_typos_surface() -> None:
    data = _fleet_data()
    data["regions"][0]["fabric"] = []
    assert _invalid(data) == "regions[0].fabric: Extra inputs are not permitted"


def test_a_fleet_without_regions_is_rejected() -> None:
    assert _invalid({"profiles": {}}) == "regions: Field required"


def test_a_document_that_is_not_a_mapping_is_rejected() -> None:
    assert _invalid(["regions"]) == (
        "fleet: expected a mapping with 'profiles' and 'regions', got list"
    )
    assert _invalid(None).endswith("got NoneType")


def test_the_error_names_the_offending_path_as_its_param() -> None:
    data = _fleet_data()
    _first_rack(data)["hosts"][0]["profile"] = "nope"
    with pytest.raises(InvalidRequest) as caught:
        parse_fleet(data)
    assert caught.value.param == "regions[0].fabrics[0].blocks[0].racks[0].hosts[0]"


# --- the shipped fleets -----------------------------------------------------------------


def test_the_built_in_default_fleet_parses_into_a_few_hundred_unique_hosts() -> None:
    fleet = _load_shipped("default")
    assert len(fleet.hosts) >= 300
    assert len(fleet.regions) >= 3
    assert len({h.gpu_type for h in fleet.hosts}) >= 4
    assert len({h.name for h in fleet.hosts}) == len(fleet.hosts)
    assert len({h.ip_address for h in fleet.hosts}) == len(fleet.hosts)
    assert {"us-central-8", "us-west-2", "eu-north-1"} <= {r.name for r in fleet.regions}


def test_every_default_region_has_a_driver_catalogue_and_one_or_two_fabrics() -> None:
    fleet = _load_shipped("default")
    for region in fleet.regions:
        assert 3 <= len(region.driver_versions) <= 4, region.name
        assert 1 <= len(region.fabrics) <= 2, region.name
        assert fleet.hosts_in_region(region.name), region.name
        assert all(h.num_gpus == 8 for h in fleet.hosts_in_region(region.name))


def test_default_racks_hold_four_to_eight_hosts() -> None:
    fleet = _load_shipped("default")
    sizes: dict[tuple[str, str], int] = {}
    for host in fleet.hosts:
        sizes[(host.region, host.rack)] = sizes.get((host.region, host.rack), 0) + 1
    assert all(4 <= size <= 8 for size in sizes.values())


def test_the_small_test_fleet_has_the_documented_shape() -> None:
    fleet = _load_shipped("small")
    test1, test2 = fleet.hosts_in_region("test-1"), fleet.hosts_in_region("test-2")
    assert len(test1) == 16
    assert {(h.fabric, h.block, h.rack) for h in test1} == {
        ("ib-a", "b1", "r01"),
        ("ib-a", "b1", "r02"),
        ("ib-b", "b1", "r03"),
        ("ib-b", "b1", "r04"),
    }
    assert {h.gpu_type for h in test1} == {GpuType.H100_SXM}
    assert [h.name for h in test2] == [f"test2-r01-0{i}" for i in range(1, 5)]
    assert {h.gpu_type for h in test2} == {GpuType.L40_PCIE}
    assert all(len(r.driver_versions) == 1 for r in fleet.regions)


# --- placement policy -------------------------------------------------------------------


def test_crossing_fabrics_is_off_unless_the_fleet_or_a_region_allows_it() -> None:
    data = _fleet_data()
    fleet = parse_fleet(data)
    assert [fleet.placement_for(r).allow_cross_fabric for r in fleet.regions] == [False, False]
    data["placement"] = {"allow_cross_fabric": True}
    data["regions"][1]["placement"] = {"allow_cross_fabric": False}
    fleet = parse_fleet(data)
    assert [fleet.placement_for(r).allow_cross_fabric for r in fleet.regions] == [True, False]


def test_an_unknown_placement_option_is_reported_with_its_path() -> None:
    data = _fleet_data()
    data["regions"][0]["placement"] = {"allow_cross_fabrics": True}
    assert _invalid(data).startswith("regions[0].placement.allow_cross_fabrics:")

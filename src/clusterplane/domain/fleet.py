"""The fleet model: what a fleet file says, and its expansion into flat host specs.

This module owns the *shape* of a fleet file and the rules that turn it into one
`HostSpec` per physical host. It is pure: the caller (the fleet service, the simulated
driver, tests) reads the YAML and hands over the resulting mapping; nothing here touches
the disk. The format, also documented in `docs/fleet-file.md`::

    profiles:                      # reusable host shapes, by name
      h100:
        gpu_type: H100_SXM         # a GpuType value
        num_gpus: 8
        num_cpu_cores: 208
        memory_gib: 2048
        ib_hca_count: 8            # optional, default 0
        ib_hca_type: ConnectX-7 NDR 400Gb/s
        nvswitch_count: 4          # optional, default 0
        nvswitch_type: NVSwitch gen3
        ephemeral_storage: 28Ti    # optional, a Kubernetes quantity, default "0"
    placement:                     # optional, fleet-wide policy
      allow_cross_fabric: false    # may one cluster span fabrics when none fits alone?
    regions:
      - name: us-central-8
        network: 10.8.0.0/16       # host addresses are drawn from it in file order
        placement: {allow_cross_fabric: true}   # optional, overrides the fleet-wide one
        control_plane: {nodes_per_cluster: 3, num_cpu_cores: 16, memory_gib: 64}
        driver_versions:
          - {id: cu128-drv570-ubuntu2204, cuda_version: "12.8",
             nvidia_driver_version: "570", os: ubuntu-22.04}
        fabrics:                   # fabric > block > rack > hosts
          - name: ib-a
            blocks:
              - name: b1
                racks:
                  - name: r01
                    hosts:
                      - {profile: h100, count: 4}            # generated names
                      - {name: special-host, profile: h100}  # one explicitly named host

Invariants of a parsed `Fleet`:

- Hosts come out in file order (region, fabric, block, rack, entry), so names and
  addresses are a pure function of the file.
- A generated name is `{region-short}-{rack}-{nn:02d}`: the region name without its
  non-alphanumeric characters, the rack name, and the host's 1-based position among the
  rack's generated hosts (`uscentral8-r01-03`).
- Host names are unique across the fleet; rack names are unique within a region (so
  generated names cannot collide); fabric names within a region; block names within a
  fabric; driver ids within a region; region names across the fleet.
- Each region's hosts take consecutive addresses from its network, skipping the network
  and broadcast addresses; region networks never overlap, so addresses are unique too.

Every violation raises `InvalidRequest` whose message starts with the path of the
offending entry, e.g. ``regions[0].fabrics[1].blocks[0].racks[2].hosts[0]: unknown
profile 'h1000'``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clusterplane.domain.enums import GpuType
from clusterplane.errors import InvalidRequest

__all__ = [
    "BlockSpec",
    "ControlPlaneSpec",
    "DriverVersionSpec",
    "FabricSpec",
    "Fleet",
    "FleetFile",
    "HostEntry",
    "HostProfile",
    "HostSpec",
    "PlacementPolicy",
    "RackSpec",
    "RegionSpec",
    "parse_fleet",
    "region_short_name",
    "supported_instance_types",
]

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Count = Annotated[int, Field(strict=True, ge=0)]
Positive = Annotated[int, Field(strict=True, ge=1)]
Gib = Annotated[float, Field(strict=True, gt=0)]
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?)?$")]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HostProfile(_Spec):
    """A reusable host shape: GPUs, CPUs, memory, interconnect, local disk."""

    gpu_type: GpuType
    num_gpus: Positive
    num_cpu_cores: Positive
    memory_gib: Gib
    ib_hca_count: Count = 0
    ib_hca_type: str = ""
    nvswitch_count: Count = 0
    nvswitch_type: str = ""
    ephemeral_storage: Quantity = "0"


class HostEntry(_Spec):
    """One line of a rack: `count` generated hosts, or one host with an explicit `name`."""

    profile: str = Field(min_length=1)
    count: Positive | None = None
    name: Name | None = None


class RackSpec(_Spec):
    name: Name
    hosts: tuple[HostEntry, ...] = ()


class BlockSpec(_Spec):
    name: Name
    racks: tuple[RackSpec, ...] = ()


class FabricSpec(_Spec):
    """One InfiniBand fabric; a cluster never spans two of them."""

    name: Name
    blocks: tuple[BlockSpec, ...] = ()


class ControlPlaneSpec(_Spec):
    """The shape of the control-plane nodes every cluster in the region gets."""

    nodes_per_cluster: Positive = 3
    num_cpu_cores: Positive = 16
    memory_gib: Gib = 64.0
    placement: Literal["virtual", "hosts"] = "virtual"
    """Where they run: `virtual` machines the region provides (the simulated fleet's), or
    `hosts`, enrolled hosts of the region without GPUs (agent regions: slurmctld runs there)."""


class DriverVersionSpec(_Spec):
    """One entry of a region's driver catalogue (`regions[].driver_versions[]` on the wire)."""

    id: Name
    cuda_version: str = Field(min_length=1)
    nvidia_driver_version: str = Field(min_length=1)
    os: str = Field(min_length=1)

    @field_validator("cuda_version", "nvidia_driver_version", mode="before")
    @classmethod
    def _versions_are_quoted(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"write the version as a quoted string (got the number {value})")
        return value


class PlacementPolicy(_Spec):
    """The operator's placement policy for a region (or, as a default, every region)."""

    allow_cross_fabric: bool = False


class RegionSpec(_Spec):
    name: Name
    network: IPv4Network
    placement: PlacementPolicy | None = None  # None: the fleet-wide policy
    control_plane: ControlPlaneSpec = ControlPlaneSpec()
    driver_versions: tuple[DriverVersionSpec, ...] = ()
    fabrics: tuple[FabricSpec, ...] = ()
    storage_tib: int = Field(default=1024, ge=0, le=10_000_000)
    """Room for shared volumes in the region, in whole TiB."""

    @field_validator("network", mode="before")
    @classmethod
    def _network_is_cidr(cls, value: object) -> IPv4Network:
        if not isinstance(value, str):
            raise ValueError("expected an IPv4 network in CIDR form, such as 10.8.0.0/16")
        try:
            return IPv4Network(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 network in CIDR form ({exc})") from exc


class FleetFile(_Spec):
    """The whole fleet file, validated for shape only; `parse_fleet` checks the rest."""

    profiles: dict[str, HostProfile] = Field(default_factory=dict)
    placement: PlacementPolicy = PlacementPolicy()
    regions: tuple[RegionSpec, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class HostSpec:
    """One physical host of the fleet, fully resolved from its profile and position."""

    name: str
    region: str
    fabric: str
    block: str
    rack: str
    gpu_type: GpuType
    num_gpus: int
    num_cpu_cores: int
    memory_gib: float
    ib_hca_count: int
    ib_hca_type: str
    nvswitch_count: int
    nvswitch_type: str
    ephemeral_storage: str
    ip_address: str


@dataclass(frozen=True, slots=True)
class Fleet:
    """A parsed fleet: its regions and every host, in file order."""

    regions: tuple[RegionSpec, ...]
    hosts: tuple[HostSpec, ...]
    placement: PlacementPolicy = field(default_factory=PlacementPolicy)

    def region(self, name: str) -> RegionSpec | None:
        return next((r for r in self.regions if r.name == name), None)

    def placement_for(self, region: RegionSpec) -> PlacementPolicy:
        return region.placement or self.placement

    def hosts_in_region(self, name: str) -> tuple[HostSpec, ...]:
        return tuple(h for h in self.hosts if h.region == name)


def parse_fleet(data: object) -> Fleet:
    """Validate a fleet file's mapping and expand it into hosts; raise `InvalidRequest`."""
    spec = _validate_shape(data)
    _check_regions(spec.regions)
    slots: list[_Slot] = []
    hosts: list[HostSpec] = []
    for index, region in enumerate(spec.regions):
        region_slots = _region_slots(region, spec.profiles, f"regions[{index}]")
        hosts.extend(_assign_addresses(region, region_slots, f"regions[{index}]"))
        slots.extend(region_slots)
    _check_unique_host_names(slots)
    return Fleet(regions=spec.regions, hosts=tuple(hosts), placement=spec.placement)


def supported_instance_types(region: str | RegionSpec, hosts: Iterable[HostSpec]) -> list[str]:
    """The sorted GPU types (wire strings) of the hosts in `region`."""
    name = region if isinstance(region, str) else region.name
    return sorted({str(h.gpu_type) for h in hosts if h.region == name})


def region_short_name(region: str) -> str:
    """The region name without non-alphanumerics, as used in generated host names."""
    return re.sub(r"[^A-Za-z0-9]", "", region)


# --- validation -------------------------------------------------------------------------


def _validate_shape(data: object) -> FleetFile:
    if not isinstance(data, Mapping):
        raise InvalidRequest(
            f"fleet: expected a mapping with 'profiles' and 'regions', got {type(data).__name__}"
        )
    try:
        return FleetFile.model_validate(data)
    except ValidationError as exc:
        raise _invalid_from(exc) from None


def _invalid_from(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    lines = [f"{_format_loc(e['loc'])}: {_clean(e['msg'])}" for e in errors[:5]]
    if len(errors) > 5:
        lines.append(f"... and {len(errors) - 5} more")
    return InvalidRequest("; ".join(lines), param=_format_loc(errors[0]["loc"]))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "fleet"


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")


def _fail(path: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {message}", param=path)


def _first_duplicate(names: Iterable[str]) -> tuple[int, str] | None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            return index, name
        seen.add(name)
    return None


def _check_regions(regions: tuple[RegionSpec, ...]) -> None:
    dup = _first_duplicate(r.name for r in regions)
    if dup:
        raise _fail(f"regions[{dup[0]}].name", f"duplicate region name {dup[1]!r}")
    for index, region in enumerate(regions):
        dup = _first_duplicate(d.id for d in region.driver_versions)
        if dup:
            path = f"regions[{index}].driver_versions[{dup[0]}].id"
            raise _fail(path, f"duplicate driver version id {dup[1]!r}")
        for other in regions[:index]:
            if region.network.overlaps(other.network):
                raise _fail(
                    f"regions[{index}].network",
                    f"{region.network} overlaps {other.network} of region {other.name!r}",
                )


# --- expansion --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Slot:
    """One host before it gets an address: where it came from and what it is."""

    path: str
    name: str
    fabric: str
    block: str
    rack: str
    profile: HostProfile


def _region_slots(
    region: RegionSpec, profiles: Mapping[str, HostProfile], path: str
) -> list[_Slot]:
    dup = _first_duplicate(f.name for f in region.fabrics)
    if dup:
        raise _fail(f"{path}.fabrics[{dup[0]}].name", f"duplicate fabric name {dup[1]!r}")
    rack_paths: dict[str, str] = {}
    slots: list[_Slot] = []
    for f_index, fabric in enumerate(region.fabrics):
        f_path = f"{path}.fabrics[{f_index}]"
        dup = _first_duplicate(b.name for b in fabric.blocks)
        if dup:
            raise _fail(f"{f_path}.blocks[{dup[0]}].name", f"duplicate block name {dup[1]!r}")
        for b_index, block in enumerate(fabric.blocks):
            for r_index, rack in enumerate(block.racks):
                r_path = f"{f_path}.blocks[{b_index}].racks[{r_index}]"
                if rack.name in rack_paths:
                    raise _fail(
                        f"{r_path}.name",
                        f"duplicate rack name {rack.name!r} (also at {rack_paths[rack.name]})",
                    )
                rack_paths[rack.name] = r_path
                slots.extend(_rack_slots(region, fabric, block, rack, profiles, r_path))
    return slots


def _rack_slots(
    region: RegionSpec,
    fabric: FabricSpec,
    block: BlockSpec,
    rack: RackSpec,
    profiles: Mapping[str, HostProfile],
    path: str,
) -> Iterator[_Slot]:
    generated = itertools.count(1)
    prefix = f"{region_short_name(region.name)}-{rack.name}"
    for index, entry in enumerate(rack.hosts):
        entry_path = f"{path}.hosts[{index}]"
        profile = profiles.get(entry.profile)
        if profile is None:
            raise _fail(entry_path, f"unknown profile {entry.profile!r}")
        if entry.name is not None:
            if entry.count not in (None, 1):
                raise _fail(entry_path, "an explicit 'name' names one host; drop 'count'")
            names = [entry.name]
        else:
            names = [f"{prefix}-{next(generated):02d}" for _ in range(entry.count or 1)]
        for name in names:
            yield _Slot(entry_path, name, fabric.name, block.name, rack.name, profile)


def _usable_addresses(network: IPv4Network) -> int:
    return network.num_addresses - 2 if network.prefixlen <= 30 else network.num_addresses


def _assign_addresses(region: RegionSpec, slots: list[_Slot], path: str) -> Iterator[HostSpec]:
    usable = _usable_addresses(region.network)
    if len(slots) > usable:
        raise _fail(
            f"{path}.network",
            f"network {region.network} has {usable} host addresses; "
            f"region {region.name!r} has {len(slots)} hosts",
        )
    for slot, address in zip(slots, region.network.hosts(), strict=False):
        yield _host_spec(region.name, slot, str(address))


def _host_spec(region: str, slot: _Slot, ip_address: str) -> HostSpec:
    profile = slot.profile
    return HostSpec(
        name=slot.name,
        region=region,
        fabric=slot.fabric,
        block=slot.block,
        rack=slot.rack,
        gpu_type=profile.gpu_type,
        num_gpus=profile.num_gpus,
        num_cpu_cores=profile.num_cpu_cores,
        memory_gib=profile.memory_gib,
        ib_hca_count=profile.ib_hca_count,
        ib_hca_type=profile.ib_hca_type,
        nvswitch_count=profile.nvswitch_count,
        nvswitch_type=profile.nvswitch_type,
        ephemeral_storage=profile.ephemeral_storage,
        ip_address=ip_address,
    )


def _check_unique_host_names(slots: Iterable[_Slot]) -> None:
    first_seen: dict[str, str] = {}
    for slot in slots:
        if slot.name in first_seen:
            raise _fail(
                slot.path, f"duplicate host name {slot.name!r} (also at {first_seen[slot.name]})"
            )
        first_seen[slot.name] = slot.path

"""Generated fleet files big enough for the benchmarks (format: docs/fleet-file.md).

One region, `bench-1`, of 8-GPU H100 hosts: `fabrics` InfiniBand fabrics, each of
`blocks x racks x hosts_per_rack` hosts, so a cluster of up to a whole fabric fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import yaml

REGION = "bench-1"
GPU_TYPE = "H100_SXM"
DRIVER_ID = "cu128-drv570-ubuntu2204"
PROFILE = {
    "gpu_type": GPU_TYPE,
    "num_gpus": 8,
    "num_cpu_cores": 208,
    "memory_gib": 2048,
    "ib_hca_count": 8,
    "ib_hca_type": "ConnectX-7 NDR 400Gb/s",
    "nvswitch_count": 4,
    "nvswitch_type": "NVSwitch gen3",
    "ephemeral_storage": "28Ti",
}


@dataclass(frozen=True)
class FleetShape:
    fabrics: int
    blocks: int = 8
    racks: int = 16  # per block
    hosts_per_rack: int = 16

    @property
    def hosts_per_fabric(self) -> int:
        return self.blocks * self.racks * self.hosts_per_rack

    @property
    def hosts(self) -> int:
        return self.fabrics * self.hosts_per_fabric

    @staticmethod
    def for_hosts(count: int, *, per_fabric: int = 2048) -> FleetShape:
        """The fewest standard fabrics (8 x 16 x 16 = 2,048 hosts) holding `count` hosts."""
        shape = FleetShape(fabrics=1)
        assert shape.hosts_per_fabric == per_fabric
        return FleetShape(fabrics=max(1, -(-count // per_fabric)))


def _network(hosts: int) -> str:
    prefix = 30
    while (2 ** (32 - prefix)) - 2 < hosts:
        prefix -= 1
    return str(IPv4Network(f"10.0.0.0/{min(prefix, 24)}", strict=False))


def fleet_document(shape: FleetShape) -> dict[str, object]:
    fabrics = []
    for f in range(shape.fabrics):
        blocks = []
        for b in range(shape.blocks):
            racks = [
                {
                    "name": f"f{f}b{b}r{r}",
                    "hosts": [{"profile": "h100", "count": shape.hosts_per_rack}],
                }
                for r in range(shape.racks)
            ]
            blocks.append({"name": f"b{b}", "racks": racks})
        fabrics.append({"name": f"ib-{f}", "blocks": blocks})
    return {
        "profiles": {"h100": PROFILE},
        "regions": [
            {
                "name": REGION,
                "network": _network(shape.hosts),
                "control_plane": {"nodes_per_cluster": 3, "num_cpu_cores": 16, "memory_gib": 64},
                "driver_versions": [
                    {
                        "id": DRIVER_ID,
                        "cuda_version": "12.8",
                        "nvidia_driver_version": "570",
                        "os": "ubuntu-22.04",
                    }
                ],
                "fabrics": fabrics,
            }
        ],
    }


def write_fleet(path: Path, shape: FleetShape) -> Path:
    path.write_text(yaml.safe_dump(fleet_document(shape), sort_keys=False))
    return path

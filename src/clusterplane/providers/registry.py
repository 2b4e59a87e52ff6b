"""`Drivers`: which driver serves which host, cluster type and region.

Built once by the composition root (`app`) and handed to the controllers, which look a
driver up for every call: the host driver by the host's `driver` column, the flavour by
the cluster's type and the driver of its hosts (a SLURM cluster on agent hosts runs real
Slurm, one on simulated hosts a simulated one), the storage driver by the volume's region.
So one server can run a simulated region beside a real one. An unknown name is a
`PermanentProviderError`: the operation fails with a message naming it, nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterplane.errors import PermanentProviderError
from clusterplane.providers.contracts import ClusterFlavour, HostChecks, HostDriver, StorageDriver


@dataclass
class Drivers:
    hosts: dict[str, HostDriver]
    flavours: dict[str, ClusterFlavour]  # by cluster type: "SLURM", "KUBERNETES"
    storage: StorageDriver
    storage_by_region: dict[str, StorageDriver] = field(default_factory=dict)
    # Flavours of clusters on hosts of one driver ("agent": {"SLURM": ...}); a cluster on
    # hosts of a driver not named here gets `flavours`.
    flavours_by_host: dict[str, dict[str, ClusterFlavour]] = field(default_factory=dict)
    # The driver of a node without a host of its own (a control-plane node).
    default_host: str = "simulated"

    def host(self, name: str | None) -> HostDriver:
        driver = self.hosts.get(name or self.default_host)
        if driver is None:
            raise PermanentProviderError(f"no host driver '{name}' is configured")
        return driver

    def checks(self, name: str | None) -> HostChecks | None:
        """The host driver's check feature, or None when it has none."""
        driver = self.host(name)
        return driver if isinstance(driver, HostChecks) else None

    def flavour(self, cluster_type: str, host_driver: str | None = None) -> ClusterFlavour:
        """The flavour of `cluster_type` clusters whose hosts `host_driver` runs."""
        own = self.flavours_by_host.get(host_driver or "")
        flavour = (own if own is not None else self.flavours).get(cluster_type)
        if flavour is None:
            on = f" on {host_driver} hosts" if own is not None else ""
            raise PermanentProviderError(f"no cluster flavour for '{cluster_type}' clusters{on}")
        return flavour

    def storage_for(self, region: str) -> StorageDriver:
        return self.storage_by_region.get(region, self.storage)

    def uses(self, host_driver: str) -> bool:
        return host_driver in self.hosts

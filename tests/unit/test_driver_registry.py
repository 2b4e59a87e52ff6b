"""The driver registry: a driver per host, a flavour per cluster type, storage per region."""

from __future__ import annotations

import pytest

from clusterplane.errors import PermanentProviderError
from clusterplane.providers.registry import Drivers
from clusterplane.simulation.flavour import SimulatedFlavour
from clusterplane.simulation.hosts import SimulatedHostDriver
from clusterplane.simulation.storage import SimulatedStorage


class BareHosts:
    """A host driver without the check feature."""

    name = "bare"


def registry() -> Drivers:
    simulated = SimulatedHostDriver()
    return Drivers(
        hosts={"simulated": simulated, "bare": BareHosts()},  # type: ignore[dict-item]
        flavours={"SLURM": SimulatedFlavour()},
        storage=SimulatedStorage(),
        storage_by_region={"lab-1": SimulatedStorage(seed=5)},
    )


def test_each_host_gets_the_driver_it_names_and_a_hostless_node_the_default():
    drivers = registry()
    assert drivers.host("bare").name == "bare"
    assert drivers.host(None) is drivers.host("simulated")
    assert drivers.host("") is drivers.host("simulated")


def test_only_a_driver_with_the_check_feature_runs_checks():
    drivers = registry()
    assert drivers.checks("simulated") is drivers.host("simulated")
    assert drivers.checks("bare") is None


def test_an_unknown_driver_or_cluster_type_is_a_permanent_failure_naming_it():
    drivers = registry()
    with pytest.raises(PermanentProviderError, match="'agent'"):
        drivers.host("agent")
    with pytest.raises(PermanentProviderError, match="'KUBERNETES'"):
        drivers.flavour("KUBERNETES")


def test_a_region_can_have_storage_of_its_own():
    drivers = registry()
    assert drivers.storage_for("lab-1") is drivers.storage_by_region["lab-1"]
    assert drivers.storage_for("us-central-8") is drivers.storage

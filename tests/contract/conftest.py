"""One kit per driver: every contract test runs against each driver of its role."""

from __future__ import annotations

import pytest

from tests.contract.kits import (
    FLAVOUR_KITS,
    HOST_KITS,
    STORAGE_KITS,
    FlavourKit,
    HostKit,
    StorageKit,
)


@pytest.fixture(params=sorted(HOST_KITS))
def host_kit(request: pytest.FixtureRequest) -> HostKit:
    return HOST_KITS[request.param]()


@pytest.fixture(params=sorted(FLAVOUR_KITS))
def flavour_kit(request: pytest.FixtureRequest) -> FlavourKit:
    return FLAVOUR_KITS[request.param]()


@pytest.fixture(params=sorted(STORAGE_KITS))
def storage_kit(request: pytest.FixtureRequest) -> StorageKit:
    return STORAGE_KITS[request.param]()

"""One kit per driver: every contract test runs against each driver of its role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
def host_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HostKit]:
    with HOST_KITS[request.param](tmp_path) as kit:
        yield kit


@pytest.fixture(params=sorted(FLAVOUR_KITS))
def flavour_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FlavourKit]:
    with FLAVOUR_KITS[request.param](tmp_path) as kit:
        yield kit


@pytest.fixture(params=sorted(STORAGE_KITS))
def storage_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageKit]:
    with STORAGE_KITS[request.param](tmp_path) as kit:
        yield kit

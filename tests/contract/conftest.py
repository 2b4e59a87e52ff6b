"""One kit per driver: every contract test runs against each (see `kits.KITS`)."""

from __future__ import annotations

import pytest

from tests.contract.kits import KITS, DriverKit


@pytest.fixture(params=sorted(KITS))
def kit(request: pytest.FixtureRequest) -> DriverKit:
    return KITS[request.param]()

"""Fixtures shared by every test: an in-process engine on a manual clock, real servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.engine import Engine, instant_drivers, make_engine
from tests.support.server import SMALL_FLEET, ServerProcess


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """The API and controllers in-process on `small.yaml`, fleet time moved by hand."""
    yield from make_engine(tmp_path)


@pytest.fixture
def instant(tmp_path: Path) -> Iterator[Engine]:
    """The same engine with every simulated step done the moment it starts."""
    yield from make_engine(tmp_path, drivers=instant_drivers)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server process on the small fleet, fleet time x600."""
    with ServerProcess(tmp_path, fleet=SMALL_FLEET) as proc:
        yield proc

"""Fixtures of the conformance suite: one real server process per test module.

Tests in a module share the server, so each one works on clusters, volumes and
remediations it created itself and never asserts on fleet-wide totals; a test that must
see the whole fleet (the full lifecycle) takes the function-scoped `server` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.server import SMALL_FLEET, ServerProcess


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server on the small fleet at time-scale 600, shared by one test module."""
    with ServerProcess(tmp_path_factory.mktemp("server"), fleet=SMALL_FLEET) as proc:
        yield proc

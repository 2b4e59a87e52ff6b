"""Fixtures of the browser tests: one real server and one headless chromium per module,
and a fresh browser page (its own tab storage, so signed out) per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.browser import CHROMIUM
from tests.support.server import SMALL_FLEET, ServerProcess

# Fleet time runs 300 times faster: a cluster is Ready in a few seconds, slowly enough
# that the console shows it coming up.
TIME_SCALE = 300.0


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("console")
    with ServerProcess(folder, fleet=SMALL_FLEET, time_scale=TIME_SCALE) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (scripts/ensure-chromium.sh installs it)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 850})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()

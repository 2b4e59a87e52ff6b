"""Headless Debian chromium through Playwright, for the web console's browser tests.

`CHROMIUM` is the browser `scripts/ensure-chromium.sh` installs (`make test` runs it);
Playwright launches it by path, so no browser of Playwright's own is downloaded.
Screenshots go under `artifact_dir()` (`.artifacts/browser`, or the folder in
CLUSTERPLANE_TEST_ARTIFACTS), kept after the run; `assert_not_blank` checks one.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]


def artifact_dir() -> Path:
    base = Path(os.environ.get("CLUSTERPLANE_TEST_ARTIFACTS") or ROOT / ".artifacts")
    folder = base / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(page: Page, base_url: str, key: str) -> None:
    """Open the console and sign in with `key`, as a person would."""
    page.goto(base_url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Clusters", level=1).wait_for()


def screenshot(page: Page, name: str) -> Path:
    path = artifact_dir() / name
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def colours(path: Path) -> dict[tuple[int, int, int], int]:
    """Pixel count of each colour of an image."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        found = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
    return {colour: count for count, colour in found}


def assert_not_blank(path: Path, *, min_colours: int = 64) -> None:
    """Many distinct colours, and no single colour covering (almost) everything."""
    counts = colours(path)
    total = sum(counts.values())
    assert len(counts) >= min_colours, f"{path}: only {len(counts)} colours"
    assert max(counts.values()) < 0.97 * total, f"{path}: one colour covers the image"


def hex_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))

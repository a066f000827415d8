"""A real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium.

Screenshots go to ``<pytest basetemp>/screenshots/`` (printed at the end of the session).
Without Chromium the browser tests skip with the install command, unless
``CLIPER_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs it), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CLIPER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CLIPER_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1400, 1000)
# Closed network: no background fetches, no component updates (each would be refused).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}")


def _have_browser() -> bool:
    return all(Path(p).is_file() or shutil.which(p) for p in (CHROMIUM, CHROMEDRIVER))


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "screenshots"


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory, screenshot_dir: Path):
    """One Chromium for the session (a fresh, empty profile)."""
    if not _have_browser():
        message = (f"Chromium not found ({CHROMIUM}, {CHROMEDRIVER}): "
                   "apt-get install -y chromium chromium-driver")
        if os.environ.get("CLIPER_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    print(f"\nbrowser screenshots: {screenshot_dir}")

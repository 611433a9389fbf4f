"""A real browser for tests: Debian's ``chromium`` driven headless through ``chromium-driver``
(Selenium's WebDriver), so that the status page is checked as a person sees it: scripts run,
styles apply, the DOM is what the scripts left.

    with chromium() as browser:
        browser.get(url)
        browser.find_element(By.CSS_SELECTOR, "#jobs tbody tr")

Binaries: ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian packages ``chromium`` and
``chromium-driver``, installed by ``./scripts/test``), or ``$CHROMIUM_BIN`` / ``$CHROMEDRIVER_BIN``.
A missing browser fails the test with the command that installs it; it never skips. Selenium
is given the driver's path, so it never tries to download one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver import Chrome as WebDriver

__all__ = ["WebDriver", "chromium", "console_errors", "require_browser", "wait_for"]
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM_BIN = Path(os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))
CHROMEDRIVER_BIN = Path(os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
INSTALL_HINT = (
    "install Debian's browser and its driver: "
    "apt-get install -y --no-install-recommends chromium chromium-driver "
    "(./scripts/test does it), or set CHROMIUM_BIN and CHROMEDRIVER_BIN"
)
#: headless, offline, no first-run work, a throw-away profile (added per browser)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=en-US",
)

T = TypeVar("T")


def require_browser() -> None:
    """Fail the calling test, saying how to install them, when chromium or its driver is missing."""
    binaries = (CHROMIUM_BIN, CHROMEDRIVER_BIN)
    missing = [str(p) for p in binaries if not (p.is_file() and os.access(p, os.X_OK))]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: {INSTALL_HINT}", pytrace=False)


@contextmanager
def chromium(*, javascript: bool = True, width: int = 1400, height: int = 1000) -> Iterator[WebDriver]:
    """A headless Chromium, with JavaScript on or off for the pages it loads (the test's own
    ``execute_script`` calls work either way: they come from the driver, not from the page)."""
    require_browser()
    profile = tempfile.mkdtemp(prefix="cdm-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM_BIN)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER_BIN)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(browser: WebDriver, check: Callable[[WebDriver], T], timeout: float, message: str) -> T:
    """Poll ``check(browser)`` until it returns something truthy (Selenium's wait, with a message)."""
    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(check, message)


def console_errors(browser: WebDriver) -> list[str]:
    """The page's console messages of level SEVERE since the last call (CSP violations among them)."""
    entries: list[dict[str, str]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]

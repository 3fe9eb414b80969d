"""Debian's Chromium, headless, driven through its own chromedriver (selenium).

Nothing here downloads a browser or a driver: both paths are given, which keeps Selenium
Manager out of it, and the flags stop Chromium's own background traffic (updates, sync,
QUIC probes). Each driver gets a fresh profile directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

__all__ = ["CHROMEDRIVER", "CHROMIUM", "missing", "start_chromium"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=en-GB",
)


def missing() -> str | None:
    """Say what is missing to drive Chromium, or None when both are installed."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not absent:
        return None
    return (
        f"{' and '.join(absent)} not installed: apt-get install -y chromium chromium-driver"
        " (.ci/run does)"
    )


def start_chromium(
    profile_dir: Path,
    downloads: Path | None = None,
    size: tuple[int, int] = (1280, 900),
) -> webdriver.Chrome:
    """Start a headless Chromium on a profile in ``profile_dir``; its console log is kept."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in _FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)

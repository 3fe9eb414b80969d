"""Fixtures of the browser tests: a real API with a fleet in it, and headless Chromium.

Screenshots go to ``<basetemp>/console-screenshots`` (the run's artifacts); with
``CONSOLE_SCREENSHOTS_DIR`` set (``make screenshots``), those the docs show are written
there too. Without Chromium the tests are skipped with the reason, unless
``TEST_BROWSER_REQUIRED`` is set (as CI does), when that is a failure.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from selenium import webdriver

from api import create_app
from api.auth import create_key
from core.settings import DatabaseSettings
from tests.api.conftest import ADMIN_KEY, api_settings
from tests.api.helpers import serve_in_thread
from tests.browser.fleet import LoadedFleet, load_fleet
from tests.support import chromium

# Error lines a test provokes on purpose (a 401, a stopped API) are fine; these never are.
_NEVER_IN_THE_LOG = ("Content Security Policy", "Uncaught", "TypeError", "ReferenceError")


@pytest.fixture
def storage_mode() -> str:
    """One path is enough: the console reads through the API, which the API tests cover."""
    return "plain"


@pytest.fixture(autouse=True)
def _skip_or_fail_without_chromium() -> None:
    """Before any other fixture of a test here: no database work for a test that skips."""
    reason = chromium.missing()
    if reason is None:
        return
    if os.environ.get("TEST_BROWSER_REQUIRED"):
        pytest.fail(f"TEST_BROWSER_REQUIRED is set but {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Console:
    """A served API with the test fleet: its base URL and keys."""

    url: str
    read_key: str
    admin_key: str
    fleet: LoadedFleet
    db_url: str


async def _read_key(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await create_key(conn, "read", "console test")


@pytest.fixture
def fleet_db(db_url: str) -> tuple[str, LoadedFleet]:
    """The test database with the fleet loaded."""
    return db_url, asyncio.run(load_fleet(db_url))


@pytest.fixture
def console(fleet_db: tuple[str, LoadedFleet]) -> Iterator[Console]:
    """The API serving the fleet from a thread, on a free port."""
    db_url, fleet = fleet_db
    app = create_app(api_settings(), DatabaseSettings(database_url=db_url, db_pool_min=1))
    with serve_in_thread(app) as url:
        yield Console(url, asyncio.run(_read_key(db_url)), ADMIN_KEY, fleet, db_url)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every screenshot of the run goes."""
    path = tmp_path_factory.getbasetemp() / "console-screenshots"
    path.mkdir(exist_ok=True)
    return path


Shot = Callable[[str], Path]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium for this test; its downloads land in ``tmp_path/downloads``."""
    (tmp_path / "downloads").mkdir()
    driver = chromium.start_chromium(tmp_path / "profile", tmp_path / "downloads")
    try:
        yield driver
        bad = [
            entry["message"]
            for entry in driver.get_log("browser")  # type: ignore[no-untyped-call]
            if any(word in entry["message"] for word in _NEVER_IN_THE_LOG)
        ]
        assert bad == [], "the console logged errors"
    finally:
        driver.quit()


@pytest.fixture
def shot(browser: webdriver.Chrome, screenshot_dir: Path, request: pytest.FixtureRequest) -> Shot:
    """Save a screenshot of the whole page (not only the window) as ``console-<name>.png``."""

    def take(name: str) -> Path:
        size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = browser.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path = screenshot_dir / f"console-{name}.png"
        path.write_bytes(base64.b64decode(shot["data"]))
        docs = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
        if docs:
            shutil.copyfile(path, Path(docs) / path.name)
        return path

    return take

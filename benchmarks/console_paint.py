"""The console's first paint on loopback, with a fleet of 10,000 devices: one JSON line.

Each run starts a fresh headless Chromium (empty cache) on the console served by the API
from this process, and reads the Performance API: first contentful paint of the sign-in
page, then, signed in and with the cache emptied, of the fleet page, and when the fleet
page had drawn its first data (the console's ``console:data`` mark: counts and the first
page of the device table). Target: both under 1,000 ms. One line per storage path. Reads
``DATABASE_URL``; without it, starts a private PostgreSQL. Needs chromium and
chromium-driver (Debian packages).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import psycopg
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from benchmarks.common import (
    API_KEY,
    api_server,
    database_server,
    default_path,
    scratch_database,
    storage_paths,
)
from ingest.records import DeviceUpdate, ReadingSet
from ingest.writer import BatchWriter
from tests.support import chromium

METRICS = ("temperature", "humidity", "pressure", "voltage")
TARGET_MS = 1000
_TIMINGS = """
const paint = performance.getEntriesByName('first-contentful-paint')[0];
const data = performance.getEntriesByName('console:data')[0];
const nav = performance.getEntriesByType('navigation')[0];
return {fcp: paint ? paint.startTime : null, data: data ? data.startTime : null,
        response_end: nav.responseEnd, dom_content_loaded: nav.domContentLoadedEventEnd};
"""


async def load(url: str, mode: Literal["plain", "timescale"], devices: int) -> None:
    """Register ``devices`` (a tenth never seen, a tenth offline), 5 reading-sets each."""
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (device_id, name, metadata, expected_interval_s)"
            " SELECT 'dev-' || lpad(g::text, 6, '0'), 'Device ' || g,"
            " jsonb_build_object('site', 'site-' || g %% 20, 'kind', 'sensor'), 10"
            " FROM generate_series(1, %s) g",
            [devices],
        )
    async with BatchWriter(url, mode=mode, pool_min=2, pool_max=2) as writer:
        for first in range(1, devices + 1, 1_000):
            keys = [k for k in range(first, min(first + 1_000, devices + 1)) if k % 10]
            heard = {k: now - timedelta(hours=2 if k % 10 == 1 else 0, seconds=k % 7) for k in keys}
            sets: list[ReadingSet] = [
                (k, heard[k] - timedelta(seconds=10 * i), dict.fromkeys(METRICS, k + i / 10))
                for k in keys
                for i in range(5)
            ]
            await writer.write(sets, [DeviceUpdate(k, heard[k], 1, 5, k % 3) for k in keys])
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("VACUUM ANALYZE")


def measure(base: str, profile: Path) -> dict[str, float]:
    """One cold visit: the sign-in page, then the fleet page with an emptied cache."""
    browser = chromium.start_chromium(profile)
    try:
        browser.get(f"{base}/")
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "api-key"))
        signin = browser.execute_script(_TIMINGS)
        browser.execute_script(
            "sessionStorage.setItem('telemetry-console.api-key', arguments[0])", API_KEY
        )
        browser.execute_cdp_cmd("Network.clearBrowserCache", {})
        browser.refresh()
        fleet = WebDriverWait(browser, 30).until(
            lambda b: (t := b.execute_script(_TIMINGS))["data"] is not None and t
        )
        rows = browser.find_elements(By.CSS_SELECTOR, "#device-table tbody tr[data-device]")
        if len(rows) != 50:
            raise RuntimeError(f"the fleet table shows {len(rows)} devices, not 50")
    finally:
        browser.quit()
    return {
        "signin_fcp_ms": signin["fcp"],
        "fleet_fcp_ms": fleet["fcp"],
        "fleet_data_ms": fleet["data"],
        "fleet_response_end_ms": fleet["response_end"],
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 1), "max": round(max(values), 1)}


async def bench(
    url: str, mode: Literal["plain", "timescale"], devices: int, runs: int
) -> dict[str, Any]:
    """Load the fleet, serve the API here, and measure ``runs`` cold visits."""
    await load(url, mode, devices)
    visits: list[dict[str, float]] = []
    async with api_server(url) as base:
        with tempfile.TemporaryDirectory(prefix="bench-chromium-") as tmp:
            for run in range(runs):
                # Selenium blocks; the API answers from this loop meanwhile.
                visit = await asyncio.to_thread(measure, base, Path(tmp) / str(run))
                print(f"  {mode} visit {run}: {visit}", file=sys.stderr)
                visits.append(visit)
    line: dict[str, Any] = {"benchmark": "console_paint", "path": mode, "devices": devices}
    for name in visits[0]:
        line[name] = _summary([v[name] for v in visits])
    line["target_ms"] = TARGET_MS
    line["target_met"] = (
        line["fleet_fcp_ms"]["max"] < TARGET_MS and line["fleet_data_ms"]["max"] < TARGET_MS
    )
    return line


def main() -> int:
    """Measure on each storage path asked for (by default the one a deployment would use)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000, help="devices registered")
    parser.add_argument("--runs", type=int, default=5, help="cold visits")
    parser.add_argument(
        "--path", choices=["default", "plain", "timescale", "all"], default="default"
    )
    args = parser.parse_args()
    reason = chromium.missing()
    if reason is not None:
        print(f"console_paint: {reason}", file=sys.stderr)
        return 1
    with database_server() as admin_url:
        modes = (
            [default_path(admin_url)]
            if args.path == "default"
            else storage_paths(admin_url, args.path)
        )
        for mode in modes:
            with scratch_database(admin_url, mode) as url:
                line = asyncio.run(bench(url, mode, args.devices, args.runs))
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

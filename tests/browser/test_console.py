"""The web console in headless Chromium against a real API with a fleet in it.

Each test waits on what the page shows (rows, attributes, text), never on time. The
pictures in docs/quickstart.md are the screenshots taken here (``make screenshots``).
"""

from __future__ import annotations

import asyncio
import csv
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from api import create_app
from core.registry import create_device
from core.settings import DatabaseSettings
from tests.api.conftest import ADMIN_KEY, api_settings
from tests.api.helpers import serve_in_thread
from tests.browser.conftest import Console, Shot
from tests.browser.fleet import FEATURED, FEATURED_METRICS, MEMBERS, REJECTS, LoadedFleet
from tests.ingest.alert_helpers import add_rule, evaluator

pytestmark = pytest.mark.browser

WAIT_S = 20


def wait_for(
    browser: webdriver.Chrome, what: str, check: Callable[[], Any], timeout_s: float = WAIT_S
) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what``."""
    return WebDriverWait(
        browser, timeout_s, ignored_exceptions=(AssertionError, StaleElementReferenceException)
    ).until(lambda _: check(), message=f"timed out waiting for {what}")


def values(
    browser: webdriver.Chrome, selector: str, script: str = "el.dataset.device"
) -> list[str]:
    """``script`` of each element ``selector`` finds, read in one go.

    In one script: the pages replace their rows at every refresh, so elements found in one
    call can be stale by the next.
    """
    found: list[str] = browser.execute_script(
        f"return [...document.querySelectorAll(arguments[0])].map(el => {script})", selector
    )
    return found


def device_ids(browser: webdriver.Chrome) -> list[str]:
    return values(browser, "#device-table tbody tr[data-device]")


def sign_in(browser: webdriver.Chrome, console: Console, key: str, hash_part: str = "") -> None:
    browser.get(f"{console.url}/{hash_part}")
    field = WebDriverWait(browser, WAIT_S).until(ec.element_to_be_clickable((By.ID, "api-key")))
    field.send_keys(key)
    browser.find_element(By.ID, "sign-in").click()


def signed_in_on_fleet(browser: webdriver.Chrome, console: Console, hash_part: str = "") -> None:
    sign_in(browser, console, console.read_key, hash_part)
    wait_for(browser, "the device table", lambda: device_ids(browser))


def text(browser: webdriver.Chrome, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _expected_order(*, descending: bool) -> list[str]:
    # By last seen (never seen as the earliest), ties by id: what sort=last_seen promises.
    def key(member: Any) -> tuple[float, str]:
        ago = member.heard_ago
        return (-math.inf if ago is None else -ago.total_seconds(), member.device_id)

    return [m.device_id for m in sorted(MEMBERS, key=key, reverse=descending)]


def test_sign_in_shows_the_fleet_and_keeps_the_key_out_of_urls(
    console: Console, browser: webdriver.Chrome, shot: Shot
) -> None:
    signed_in_on_fleet(browser, console)
    wait_for(browser, "every device", lambda: len(device_ids(browser)) == len(MEMBERS))
    assert device_ids(browser) == sorted(m.device_id for m in MEMBERS)
    never = sum(1 for m in MEMBERS if m.heard_ago is None)
    offline = sum(1 for m in MEMBERS if m.heard_ago and m.heard_ago > timedelta(minutes=1))
    assert text(browser, "count-total") == str(len(MEMBERS))
    assert text(browser, "count-never-seen") == str(never)
    assert text(browser, "count-offline") == str(offline)
    assert text(browser, "count-online") == str(len(MEMBERS) - never - offline)
    assert int(text(browser, "readings-minute").replace(",", "")) > 0
    first_row = values(browser, "#device-table tbody tr:first-child td", "el.textContent")
    assert first_row[:3] == ["battery-01", "", "online"]
    assert first_row[3].endswith(" s ago")
    assert first_row[4:] == ["1", "kindbatterycells4"]

    # The key is in this tab's session storage and nowhere else: not in a URL, not stored.
    key = console.read_key
    assert (
        browser.execute_script("return sessionStorage.getItem('telemetry-console.api-key')") == key
    )
    assert browser.execute_script("return localStorage.length") == 0
    assert browser.get_cookies() == []
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])"
    )
    assert any("/v1/devices" in url for url in urls)
    assert not [url for url in urls if key in url]
    shot("fleet")


def test_a_wrong_key_gets_a_clear_message(
    console: Console, browser: webdriver.Chrome, shot: Shot
) -> None:
    sign_in(browser, console, "ak_not-a-key-this-api-gave-out")
    message = wait_for(
        browser,
        "the message",
        lambda: (el := browser.find_element(By.ID, "sign-in-message")).is_displayed() and el,
    )
    assert message.text.startswith("Wrong key: the API does not know this key")
    assert browser.execute_script("return sessionStorage.length") == 0
    assert browser.find_elements(By.ID, "device-table") == []
    shot("sign-in")


def test_the_fleet_table_sorts_filters_and_pages_on_the_server(
    console: Console, browser: webdriver.Chrome
) -> None:
    signed_in_on_fleet(browser, console, "#/fleet?size=25")
    everyone = sorted(m.device_id for m in MEMBERS)
    wait_for(browser, "a page of 25", lambda: device_ids(browser) == everyone[:25])
    assert text(browser, "devices-info") == "Devices 1\N{EN DASH}25"
    browser.find_element(By.ID, "devices-next").click()
    wait_for(browser, "the second page", lambda: device_ids(browser) == everyone[25:])
    assert text(browser, "devices-info") == f"Devices 26\N{EN DASH}{len(MEMBERS)} (end)"
    assert not browser.find_element(By.ID, "devices-next").is_enabled()
    browser.find_element(By.ID, "devices-previous").click()
    wait_for(browser, "the first page again", lambda: device_ids(browser) == everyone[:25])

    sort = browser.find_element(By.CSS_SELECTOR, "button[data-sort='last_seen']")
    sort.click()  # the first click: most recent first
    newest = _expected_order(descending=True)
    wait_for(browser, "most recent first", lambda: device_ids(browser) == newest[:25])
    browser.find_element(By.CSS_SELECTOR, "button[data-sort='last_seen']").click()
    oldest = _expected_order(descending=False)
    wait_for(browser, "never seen first", lambda: device_ids(browser) == oldest[:25])
    header = browser.find_element(By.CSS_SELECTOR, "th[data-key='last_seen']")
    assert header.get_attribute("aria-sort") == "ascending"

    browser.find_element(By.ID, "device-search").send_keys("PUMP")
    pumps = sorted((m for m in MEMBERS if "pump" in m.device_id), key=lambda m: m.device_id)
    wait_for(
        browser, "pumps only", lambda: sorted(device_ids(browser)) == [m.device_id for m in pumps]
    )
    Select(browser.find_element(By.ID, "status-filter")).select_by_value("offline")
    wait_for(browser, "the offline pump", lambda: device_ids(browser) == ["pump-04"])
    assert "search=PUMP" in browser.current_url
    assert "status=offline" in browser.current_url
    assert "sort=last_seen" in browser.current_url


def _show_device(browser: webdriver.Chrome, console: Console) -> None:
    signed_in_on_fleet(browser, console)
    browser.find_element(By.LINK_TEXT, FEATURED).click()
    wait_for(
        browser,
        "a chart per metric",
        lambda: (
            len(browser.find_elements(By.CSS_SELECTOR, "figure.chart canvas"))
            == len(FEATURED_METRICS)
        ),
    )


def _chart_facts(browser: webdriver.Chrome, metric: str) -> dict[str, str]:
    figure = browser.find_element(By.CSS_SELECTOR, f"figure.chart[data-metric='{metric}']")
    names = ("points", "drawn", "slots", "start", "end", "bucketS")
    return {
        name: str(figure.get_attribute(f"data-{name}".replace("bucketS", "bucket-s")))
        for name in names
    }


def _buckets_with_readings(fleet: LoadedFleet, start: str, end: str, bucket_s: int) -> int:
    times = fleet.featured_in(datetime.fromisoformat(start), datetime.fromisoformat(end))
    return len({int(t.timestamp()) // bucket_s for t in times})


@pytest.mark.parametrize(
    ("range_key", "bucket_s"), [("1h", 60), ("24h", 600), ("7d", 3600), ("30d", 21600)]
)
def test_a_device_chart_has_a_point_per_bucket_with_readings_and_gaps(
    console: Console, browser: webdriver.Chrome, shot: Shot, range_key: str, bucket_s: int
) -> None:
    _show_device(browser, console)
    browser.find_element(By.CSS_SELECTOR, f"button[data-range='{range_key}']").click()
    wait_for(
        browser,
        f"{range_key} in {bucket_s} s buckets",
        lambda: all(_chart_facts(browser, m)["bucketS"] == str(bucket_s) for m in FEATURED_METRICS),
    )
    for metric in FEATURED_METRICS:
        facts = _chart_facts(browser, metric)
        expected = _buckets_with_readings(console.fleet, facts["start"], facts["end"], bucket_s)
        assert int(facts["points"]) == int(facts["drawn"]) == expected, (metric, facts)
        assert int(facts["slots"]) > expected  # the silences are buckets without a point
    latest = values(browser, "#latest-table tbody tr[data-metric]", "el.dataset.metric")
    assert sorted(latest) == sorted(FEATURED_METRICS)
    wait_for(
        browser,
        "raw readings",
        lambda: browser.find_elements(By.CSS_SELECTOR, "#raw-table tbody tr"),
    )
    assert f"range={range_key}" in browser.current_url
    if range_key == "1h":  # the band and the recent silence show best
        shot("device")


def test_the_csv_link_downloads_the_rows_with_the_key_in_a_header(
    console: Console, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    _show_device(browser, console)
    browser.find_element(By.ID, "download-csv").click()
    downloads = tmp_path / "downloads"
    [saved] = wait_for(
        browser,
        "the CSV file",
        lambda: list(downloads.glob("*.csv")) if not list(downloads.glob("*.crdownload")) else [],
    )
    device, start, end = saved.stem.split("_")
    assert device == FEATURED
    window = [datetime.strptime(t, "%Y%m%dT%H%M%S%z") for t in (start, end)]
    with saved.open(newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["device_id", "metric", "ts", "value", "unit"]
    expected = len(console.fleet.featured_in(*window)) * len(FEATURED_METRICS)
    assert expected > 300
    assert len(table) - 1 == expected
    assert {row[0] for row in table[1:]} == {FEATURED}
    assert {row[1] for row in table[1:]} == set(FEATURED_METRICS)
    wait_for(browser, "the note", lambda: text(browser, "download-note").startswith("Downloaded"))


def test_rejects_show_reasons_to_an_admin_and_a_note_to_a_read_key(
    console: Console, browser: webdriver.Chrome, shot: Shot
) -> None:
    sign_in(browser, console, console.admin_key, "#/rejects")
    wait_for(
        browser,
        "every dead letter",
        lambda: len(values(browser, "#rejects-table tr[data-reason]", "1")) == len(REJECTS),
    )
    reasons = values(browser, "#rejects-table tr[data-reason]", "el.dataset.reason")
    # Newest first: the reverse of the order they were stored in.
    assert reasons == [reason for _, _, reason, _ in reversed(REJECTS)]
    assert "line 1 column 17" in browser.find_element(By.ID, "rejects-table").text
    shot("rejects")

    browser.find_element(By.ID, "sign-out").click()
    sign_in(browser, console, console.read_key, "#/rejects")
    note = wait_for(
        browser, "the admin note", lambda: browser.find_element(By.ID, "rejects-forbidden")
    )
    assert "admin keys only" in note.text


def test_the_console_refreshes_itself(console: Console, browser: webdriver.Chrome) -> None:
    signed_in_on_fleet(browser, console)
    wait_for(browser, "every device", lambda: len(device_ids(browser)) == len(MEMBERS))

    async def register() -> None:
        async with await psycopg.AsyncConnection.connect(console.db_url, autocommit=True) as conn:
            await create_device(conn, "zz-newcomer", name="Registered meanwhile")

    asyncio.run(register())
    wait_for(browser, "the new device", lambda: device_ids(browser)[-1] == "zz-newcomer")
    assert text(browser, "count-total") == str(len(MEMBERS) + 1)


def test_an_api_that_stops_answering_shows_a_banner(
    fleet_db: tuple[str, LoadedFleet], browser: webdriver.Chrome
) -> None:
    db_url, _ = fleet_db
    app = create_app(api_settings(), DatabaseSettings(database_url=db_url, db_pool_min=1))
    with serve_in_thread(app) as url:
        browser.get(f"{url}/")
        browser.execute_script(
            "sessionStorage.setItem('telemetry-console.api-key', arguments[0])", ADMIN_KEY
        )
        browser.refresh()
        wait_for(browser, "the device table", lambda: device_ids(browser))
    banner = browser.find_element(By.ID, "banner")
    wait_for(browser, "the banner", banner.is_displayed)
    assert banner.text.startswith("The API does not answer")
    assert len(device_ids(browser)) == len(MEMBERS)  # what it last said stays on screen


def test_a_revoked_key_signs_out_with_a_message(
    console: Console, browser: webdriver.Chrome
) -> None:
    signed_in_on_fleet(browser, console)
    with psycopg.connect(console.db_url, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now()")
    # The API remembers a good key for 10 s; the console notices at its next refresh after.
    message = wait_for(
        browser,
        "the sign-in form again",
        lambda: (el := browser.find_element(By.ID, "sign-in-message")).is_displayed() and el,
        timeout_s=40,
    )
    assert message.text == "The API no longer accepts your key (revoked?): sign in again."
    assert browser.execute_script("return sessionStorage.length") == 0


async def _evaluate_offline_rule(db_url: str, heard_again: str | None = None) -> None:
    """An offline rule over the fleet (made once), evaluated now; ``heard_again`` reports."""
    async with evaluator(db_url, "plain") as ev:
        if not await ev.rows("SELECT 1 FROM alert_rules"):
            await add_rule(ev.conn, name="Gone quiet", kind="offline", severity="critical")
        if heard_again is not None:
            await ev.conn.execute(
                "UPDATE devices SET last_seen = now() WHERE device_id = %s", [heard_again]
            )
        await ev.at(datetime.now(UTC))


def test_the_alerts_page_shows_what_fires_and_what_happened(
    console: Console, browser: webdriver.Chrome, shot: Shot
) -> None:
    asyncio.run(_evaluate_offline_rule(console.db_url))
    quiet = timedelta(hours=1)
    offline = sorted(m.device_id for m in MEMBERS if m.heard_ago and m.heard_ago > quiet)
    sign_in(browser, console, console.read_key, "#/alerts")
    firing = wait_for(
        browser, "the firing alerts", lambda: values(browser, "#firing-table tr[data-device]")
    )
    assert sorted(firing) == offline
    assert text(browser, "firing-count") == str(len(offline))
    assert text(browser, "evaluated-at").startswith("Rules last evaluated")
    events = values(browser, "#history-table tr[data-event]", "el.dataset.event")
    assert events == ["firing"] * len(offline)
    assert "Gone quiet" in browser.find_element(By.ID, "firing-table").text
    shot("alerts")

    # A device is heard again: the next evaluation resolves its alert, and the page,
    # refreshing itself, shows it.
    asyncio.run(_evaluate_offline_rule(console.db_url, heard_again=offline[0]))
    wait_for(
        browser,
        "the resolution",
        lambda: values(browser, "#firing-table tr[data-device]") == offline[1:],
    )
    wait_for(
        browser,
        "the resolution in the history",
        lambda: (
            values(browser, "#history-table tr[data-event]", "el.dataset.event")[0] == "resolved"
        ),
    )
    Select(browser.find_element(By.ID, "severity-filter")).select_by_value("warning")
    wait_for(browser, "an empty list", lambda: text(browser, "firing-count") == "0")
    assert browser.current_url.endswith("#/alerts?severity=warning")

"""Alert rules, webhooks, alerts and their history through the API, on both storage paths.

Alerts are made as they are in production: rules through the API, readings through the
batch writer, an evaluation by the ingest's evaluator.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from aiohttp import web
from aiohttp.test_utils import TestClient

from api.auth import create_key
from tests.api.conftest import ADMIN
from tests.api.helpers import load
from tests.ingest.alert_helpers import evaluator
from tests.ingest.helpers import T0

HOT = {
    "kind": "threshold",
    "name": "Too hot",
    "metric": "temperature",
    "agg": "last",
    "window_s": 600,
    "op": ">",
    "threshold": 30,
}
Client = TestClient[web.Request, web.Application]


async def _json(client: Client, method: str, path: str, status: int, **kwargs: Any) -> Any:
    r = await client.request(method, path, headers=kwargs.pop("headers", ADMIN), **kwargs)
    assert r.status == status, await r.text()
    return None if status == 204 else await r.json()


async def test_rules_are_created_read_replaced_and_deleted(client: Client) -> None:
    created = await _json(client, "POST", "/v1/alert-rules", 201, json=HOT)
    assert created["rule_id"] > 0
    assert created["version"] == 1
    # Defaults, and the clear threshold filled in: no hysteresis unless asked.
    assert (created["clear_threshold"], created["severity"], created["for_s"]) == (30, "warning", 0)
    assert (created["renotify_s"], created["enabled"], created["selector"]) == (3600, True, None)
    rule = f"/v1/alert-rules/{created['rule_id']}"
    assert await _json(client, "GET", rule, 200) == created
    offline = {"kind": "offline", "name": "Gone", "selector": {"site": "berlin"}}
    silent = {"kind": "no_data", "name": "Mute", "for_s": 600, "severity": "critical"}
    for body in (offline, silent):
        await _json(client, "POST", "/v1/alert-rules", 201, json=body)
    page = await _json(client, "GET", "/v1/alert-rules?limit=2", 200)
    assert [r["kind"] for r in page["rules"]] == ["threshold", "offline"]
    assert page["rules"][1]["factor"] == 3.0
    rest = await _json(client, "GET", f"/v1/alert-rules?cursor={page['next_cursor']}", 200)
    assert [r["name"] for r in rest["rules"]] == ["Mute"]
    assert rest["next_cursor"] is None
    critical = await _json(client, "GET", "/v1/alert-rules?severity=critical", 200)
    assert [r["name"] for r in critical["rules"]] == ["Mute"]

    # What a rule answers with goes back with PUT once its id, version and times are left out.
    changed = {k: v for k, v in created.items() if k not in ("rule_id", "version")}
    changed = {k: v for k, v in changed.items() if not k.endswith("_at")}
    changed |= {"threshold": 35, "clear_threshold": 32, "labels": {"team": "ops"}}
    replaced = await _json(client, "PUT", rule, 200, json=changed)
    assert (replaced["version"], replaced["threshold"], replaced["labels"]) == (
        2,
        35,
        {"team": "ops"},
    )
    await _json(client, "DELETE", rule, 204)
    calls: list[tuple[str, object]] = [("GET", None), ("PUT", changed), ("DELETE", None)]
    for method, payload in calls:
        error = await _json(client, method, rule, 404, json=payload)
        assert error["detail"] == f"no alert rule {created['rule_id']}"
    everything = await _json(client, "GET", "/v1/alert-rules", 200)
    assert [r["name"] for r in everything["rules"]] == ["Gone", "Mute"]


async def test_an_invalid_rule_is_a_400_that_names_the_field(client: Client) -> None:
    cases = [
        (HOT | {"window_s": 0}, "window_s: Input should be greater than or equal to 1"),
        ({k: v for k, v in HOT.items() if k != "kind"}, "kind: must be one of threshold"),
        (HOT | {"kind": "magic"}, "kind: must be one of threshold, no_data, offline"),
        (HOT | {"clear_threshold": 40}, "clear_threshold: must not be above threshold"),
        (HOT | {"op": "outside"}, "threshold, clear_threshold: not with op outside"),
        (HOT | {"device_id": "a", "selector": {"b": "c"}}, "device_id, selector: give one"),
        (HOT | {"metric": "9lives"}, "metric: String should match pattern"),
        (HOT | {"colour": "red"}, "colour: unknown parameter"),
        (HOT | {"labels": {"a-b": "c"}}, "labels.a-b.[key]: String should match pattern"),
        ({"kind": "no_data", "name": "x"}, "for_s: Field required"),
        ({"kind": "offline", "name": "x", "factor": 0}, "factor: Input should be greater than 0"),
    ]
    for body, message in cases:
        error = await _json(client, "POST", "/v1/alert-rules", 400, json=body)
        assert error["error"] == "bad_request"
        assert message in error["detail"], (body, error)


async def test_webhooks_show_their_secret_once(client: Client) -> None:
    body = {"url": "https://hooks.example/alerts?token=abc", "name": "ops"}
    created = await _json(client, "POST", "/v1/webhooks", 201, json=body)
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) == 49
    webhook = f"/v1/webhooks/{created['webhook_id']}"
    shown = await _json(client, "GET", webhook, 200)
    assert "secret" not in shown
    assert (shown["url"], shown["format"], shown["pending"], shown["dead"]) == (
        body["url"],
        "json",
        0,
        0,
    )
    changed = await _json(client, "PUT", webhook, 200, json=body | {"format": "alertmanager"})
    assert changed["format"] == "alertmanager"
    rotated = await _json(client, "POST", f"{webhook}/secret", 200)
    assert rotated["secret"] not in (created["secret"], "")
    listed = await _json(client, "GET", "/v1/webhooks", 200)
    assert [w["webhook_id"] for w in listed["webhooks"]] == [created["webhook_id"]]
    error = await _json(client, "POST", "/v1/webhooks", 400, json={"url": "ftp://x/y"})
    assert error["detail"] == "url: must be an http:// or https:// URL with a host"
    await _json(client, "DELETE", webhook, 204)
    await _json(client, "GET", f"{webhook}/deliveries", 404)


async def _firing(client: Client, db_url: str, storage_mode: str, devices: int) -> int:
    """A rule over the fleet, ``devices`` devices breaching it, one evaluation at T0."""
    rule = (await _json(client, "POST", "/v1/alert-rules", 201, json=HOT))["rule_id"]
    for i in range(devices):
        await load(db_url, storage_mode, f"oven-{i}", [(0, T0, {"temperature": 40.0 + i})])
    async with evaluator(db_url, storage_mode) as ev:
        await ev.at(T0 + timedelta(seconds=1))
    return int(rule)


async def test_alerts_now_and_their_history_page_and_filter(
    client: Client, db_url: str, storage_mode: str
) -> None:
    rule = await _firing(client, db_url, storage_mode, 3)
    alerts = await _json(client, "GET", "/v1/alerts", 200)
    assert [a["device_id"] for a in alerts["alerts"]] == ["oven-2", "oven-1", "oven-0"]
    first = alerts["alerts"][0]
    assert (first["rule_id"], first["rule_name"], first["state"], first["value"]) == (
        rule,
        "Too hot",
        "firing",
        42.0,
    )
    assert alerts["evaluated_at"] == "2026-11-20T10:00:01Z"
    page = await _json(client, "GET", "/v1/alerts?limit=2", 200)
    rest = await _json(client, "GET", f"/v1/alerts?limit=2&cursor={page['next_cursor']}", 200)
    assert [a["device_id"] for a in page["alerts"] + rest["alerts"]] == [
        "oven-2",
        "oven-1",
        "oven-0",
    ]
    assert rest["next_cursor"] is None
    one = await _json(client, "GET", f"/v1/alerts?device_id=oven-1&rule_id={rule}", 200)
    assert [a["device_id"] for a in one["alerts"]] == ["oven-1"]
    assert (await _json(client, "GET", "/v1/alerts?severity=critical", 200))["alerts"] == []
    assert (await _json(client, "GET", "/v1/alerts?state=pending", 200))["alerts"] == []

    history = await _json(client, "GET", "/v1/alerts/history?limit=2", 200)
    more = await _json(client, "GET", f"/v1/alerts/history?cursor={history['next_cursor']}", 200)
    events = history["events"] + more["events"]
    assert [(e["event"], e["from_state"], e["device_id"]) for e in events] == [
        ("firing", "ok", "oven-2"),
        ("firing", "ok", "oven-1"),
        ("firing", "ok", "oven-0"),
    ]
    assert events[0]["rule_version"] == 1
    later = await _json(client, "GET", "/v1/alerts/history?start=2026-11-20T10:00:02Z", 200)
    assert later["events"] == []


async def test_acknowledge_and_silence(client: Client, db_url: str, storage_mode: str) -> None:
    rule = await _firing(client, db_url, storage_mode, 2)
    alert = f"/v1/alerts/{rule}/oven-0"
    acked = await _json(client, "POST", f"{alert}/acknowledge", 200)
    assert acked["acknowledged_at"] is not None
    again = await _json(client, "POST", f"{alert}/acknowledge", 200)
    assert again["acknowledged_at"] == acked["acknowledged_at"]
    await load(db_url, storage_mode, "oven-cold", [(0, T0, {"temperature": 1.0})])
    error = await _json(client, "POST", f"/v1/alerts/{rule}/oven-cold/acknowledge", 409)
    assert error["detail"] == f"the alert of rule {rule} for oven-cold is ok, not firing"
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    stamp = until.isoformat().replace("+00:00", "Z")
    silenced = await _json(client, "POST", f"{alert}/silence", 200, json={"until": stamp})
    assert silenced["silenced_until"] == stamp
    # A silence before any breach makes the alert's row, in state ok.
    quiet = await _json(client, "POST", f"/v1/alerts/{rule}/oven-cold/silence", 200,
                        json={"until": stamp})  # fmt: skip
    assert (quiet["state"], quiet["silenced_until"]) == ("ok", stamp)
    lifted = await _json(client, "POST", f"{alert}/silence", 200, json={"until": None})
    assert lifted["silenced_until"] is None
    past = await _json(
        client, "POST", f"{alert}/silence", 400, json={"until": "2020-01-01T00:00:00Z"}
    )
    assert past["detail"] == "until: must be in the future (null lifts the silence)"
    history = await _json(client, "GET", f"/v1/alerts/history?rule_id={rule}&device_id=oven-0", 200)
    assert [(e["event"], e["detail"]) for e in history["events"]] == [
        ("silenced", "lifted"),
        ("silenced", f"until {until.isoformat()}"),
        ("acknowledged", ""),
        ("firing", ""),
    ]
    missing = await _json(client, "POST", f"/v1/alerts/{rule + 1}/oven-0/acknowledge", 404)
    assert missing["detail"] == f"no alert rule {rule + 1}"
    missing = await _json(client, "POST", f"/v1/alerts/{rule}/oven-9/silence", 404,
                          json={"until": None})  # fmt: skip
    assert missing["detail"] == "no device 'oven-9'"


async def test_dead_deliveries_are_listed_by_webhook(
    client: Client, db_url: str, storage_mode: str
) -> None:
    hook = await _json(client, "POST", "/v1/webhooks", 201, json={"url": "http://127.0.0.1:9/"})
    await _firing(client, db_url, storage_mode, 2)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE alert_notifications SET state = 'dead', attempts = 12, last_status = 503,"
            " last_error = 'HTTP 503 Service Unavailable', done_at = now()"
            " WHERE notification_id = (SELECT min(notification_id) FROM alert_notifications)"
        )
    webhook = f"/v1/webhooks/{hook['webhook_id']}"
    shown = await _json(client, "GET", webhook, 200)
    assert (shown["pending"], shown["dead"]) == (1, 1)
    dead = await _json(client, "GET", f"{webhook}/deliveries?state=dead", 200)
    [delivery] = dead["deliveries"]
    # The outbox's first row: rule, then device order.
    assert (delivery["status"], delivery["device_id"], delivery["attempts"]) == (
        "firing",
        "oven-0",
        12,
    )
    assert delivery["last_error"] == "HTTP 503 Service Unavailable"
    everything = await _json(client, "GET", f"{webhook}/deliveries?limit=1", 200)
    assert everything["next_cursor"] is not None


async def test_scopes_of_the_alert_routes(client: Client, db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        read = {"Authorization": f"Bearer {await create_key(conn, 'read')}"}
    rule = await _json(client, "POST", "/v1/alert-rules", 201, json=HOT)
    hook = await _json(client, "POST", "/v1/webhooks", 201, json={"url": "http://x.test/"})
    reads = ["/v1/alerts", "/v1/alerts/history", "/v1/alert-rules",
             f"/v1/alert-rules/{rule['rule_id']}"]  # fmt: skip
    for path in reads:
        assert (await client.get(path, headers=read)).status == 200, path
        assert (await client.get(path)).status == 401, path
    admin_only = [
        ("POST", "/v1/alert-rules", HOT),
        ("PUT", f"/v1/alert-rules/{rule['rule_id']}", HOT),
        ("DELETE", f"/v1/alert-rules/{rule['rule_id']}", None),
        ("GET", "/v1/webhooks", None),
        ("POST", "/v1/webhooks", {"url": "http://x.test/"}),
        ("GET", f"/v1/webhooks/{hook['webhook_id']}", None),
        ("POST", f"/v1/webhooks/{hook['webhook_id']}/secret", None),
        ("GET", f"/v1/webhooks/{hook['webhook_id']}/deliveries", None),
        ("DELETE", f"/v1/webhooks/{hook['webhook_id']}", None),
        ("POST", f"/v1/alerts/{rule['rule_id']}/x/acknowledge", None),
        ("POST", f"/v1/alerts/{rule['rule_id']}/x/silence", {"until": None}),
    ]
    for method, path, body in admin_only:
        r = await client.request(method, path, json=body, headers=read)
        assert r.status == 403, (method, path)

"""The demo's alerts: two rules, a webhook, and a local receiver that prints what it gets.

The rules are made through the query API on the demo's first run and kept (the data
directory is reused): a threshold on the temperature of the environmental devices, which
the simulator's anomalies (a spike of +25 °C, about one sample in a thousand) cross within
the first minutes, and an offline rule over the whole simulated fleet. The receiver listens
on a free loopback port; each run points the webhook at it, checks every delivery's
signature with the webhook's secret (kept in the data directory, mode 0600) and prints one
line per notification.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, Self

import aiohttp
from aiohttp import web

from core.webhook_signature import SIGNATURE_HEADER, verify
from simulator.errors import DemoError

__all__ = ["RULES", "WEBHOOK_NAME", "DemoReceiver", "describe", "ensure_alerts"]

WEBHOOK_NAME: Final = "demo receiver"
RULES: Final[tuple[dict[str, Any], ...]] = (
    {
        "name": "Temperature spike",
        "description": "An environmental device measured more than 38 °C within a minute.",
        "kind": "threshold",
        "severity": "warning",
        "selector": {"profile": "environmental"},
        "metric": "temperature",
        "agg": "max",
        "window_s": 60,
        "op": ">",
        "threshold": 38.0,
        "clear_threshold": 35.0,
        "labels": {"team": "demo"},
    },
    {
        "name": "Device offline",
        "description": "Not heard for three times its expected interval.",
        "kind": "offline",
        "severity": "critical",
        "selector": {"simulator": "true"},
        "factor": 3.0,
        "labels": {"team": "demo"},
    },
)


def describe(alert: dict[str, Any], signed: bool) -> str:
    """Return the receiver's line for one delivered notification."""
    rule = alert.get("rule", {})
    value = alert.get("value")
    shown = "" if value is None else f" value {value:g}"
    again = " (repeat)" if alert.get("repeat") else ""
    check = "signature ok" if signed else "BAD SIGNATURE"
    return (
        f"webhook: {str(alert.get('status', '?')).upper()}{again} {rule.get('name', '?')!r}"
        f" ({rule.get('severity', '?')}) on {alert.get('device_id', '?')}:{shown}"
        f" at {alert.get('at', '?')} [{check}]"
    )


class DemoReceiver:
    """A webhook receiver on 127.0.0.1 (a free port) that prints each delivery."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        #: The webhook's signing secret, which the deliveries are checked with.
        self.secret = ""
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.received = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = verify(self.secret, body, request.headers.get(SIGNATURE_HEADER))
        try:
            alert = json.loads(body)
        except ValueError:
            return web.Response(status=400, text="not JSON")
        self.received += 1
        self._say(describe(alert, signed) if isinstance(alert, dict) else f"webhook: {alert!r}")
        return web.Response(status=204)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


class _Admin:
    """The query API's admin routes through the demo's session."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, key: str) -> None:
        self._session = session
        self._api_url = api_url
        self._headers = {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, body: object = None) -> Any:
        """Make the request; return its JSON answer, or raise DemoError saying what failed."""
        url = f"{self._api_url}{path}"
        async with self._session.request(method, url, json=body, headers=self._headers) as resp:
            answer = await resp.json(content_type=None)
        if resp.status >= 300:
            raise DemoError(f"setting up the demo's alerts: {method} {url}: {resp.status} {answer}")
        return answer


async def ensure_alerts(
    session: aiohttp.ClientSession, api_url: str, key: str, receiver_url: str, secret: str | None
) -> tuple[list[str], str]:
    """Make the demo's rules and webhook where missing, point the webhook at the receiver.

    ``key`` is the admin key, ``secret`` the webhook's secret kept from an earlier run (None:
    there is none). Returns the names of the rules made now and the secret in force, which
    is new when the webhook is, or when the kept one was lost (a secret is shown once).
    """
    api = _Admin(session, api_url, key)
    have = {rule["name"] for rule in (await api.call("GET", "/v1/alert-rules?limit=1000"))["rules"]}
    made = []
    for rule in RULES:
        if rule["name"] not in have:
            await api.call("POST", "/v1/alert-rules", rule)
            made.append(str(rule["name"]))
    hooks = (await api.call("GET", "/v1/webhooks"))["webhooks"]
    mine = [hook for hook in hooks if hook["name"] == WEBHOOK_NAME]
    body = {"name": WEBHOOK_NAME, "url": receiver_url, "format": "json", "enabled": True}
    if not mine:
        return made, str((await api.call("POST", "/v1/webhooks", body))["secret"])
    hook = f"/v1/webhooks/{mine[0]['webhook_id']}"
    await api.call("PUT", hook, body)
    if secret is None:
        secret = str((await api.call("POST", f"{hook}/secret"))["secret"])
    return made, secret

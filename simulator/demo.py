"""``python -m simulator demo``: the whole platform on this machine, with a fleet sending.

Starts a private PostgreSQL (TimescaleDB where installed) and a private MQTT broker
(Mosquitto where installed, else the pure-Python amqtt with its lower limits, spoken to over
MQTT 3.1.1; with neither, MQTT is off and the fleet sends over HTTP only), migrates, starts
the query API and the ingest as processes, registers and runs a simulated fleet, prints
where to look, then a one-line summary every few seconds. Ctrl-C or SIGTERM stops the fleet,
the ingest, the API, the broker and PostgreSQL, in that order, and exits 0. If a part
dies, the launcher says which, stops the rest and exits 1.

Everything lives in the data directory (default ``./var``) and is reused by the next run::

    demo.json       ports chosen on the first run (marks the directory as the demo's)
    run.json        PIDs of the running demo's processes (removed on a clean stop)
    admin-key       the API admin key, mode 0600
    fleet.json      the simulated fleet: device tokens, seqs (mode 0600);
                    fleet-http.json for the HTTP-only fleet of a run without MQTT
    postgres/       the PostgreSQL cluster and its log
    mosquitto/      Mosquitto's configuration, persistence and log
    amqtt/          amqtt's configuration and log (it keeps nothing across restarts)
    webhook-secret  the signing secret of the demo's webhook, mode 0600
    logs/           ingest.log, api.log

It also makes two alert rules and a webhook pointed at a receiver of its own, which prints
each notification it gets (:mod:`simulator.demo_alerts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import aiohttp
import psycopg
from psycopg import sql

from core.settings import MqttProtocol
from simulator.accounting import Ledger
from simulator.api_client import QueryApi
from simulator.demo_alerts import DemoReceiver, ensure_alerts
from simulator.demo_data import (
    admin_key,
    choose_port,
    clean,
    read_json,
    read_secret,
    running_launcher,
    write_private,
)
from simulator.demo_summary import Summary
from simulator.errors import DemoError, ServiceError, ServiceNotInstalledError
from simulator.fleet import Fleet, parse_protocols
from simulator.processes import Child, spawn
from simulator.runner import Endpoints, RunConfig, run_fleet
from simulator.services import (
    AmqttServer,
    MosquittoServer,
    PostgresServer,
    find_amqtt,
    find_mosquitto,
    port_available,
)

__all__ = ["Broker", "DemoConfig", "DemoError", "clean", "run_demo"]

DATABASE = "telemetry"
_PG_PORT = 55432
_MQTT_PORT = 11883
_READY_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 60.0
_FLEET_STOP_S = 10.0
_NO_MQTT = (
    "MQTT is off: neither mosquitto (Debian/Ubuntu: apt-get install -y mosquitto) nor amqtt"
    " (pip install -e '.[demo]') is installed, so the fleet sends over HTTP only."
)
_AMQTT_LIMITS = (
    "amqtt {version} stands in for Mosquitto{why}, with lower limits: MQTT 3.1.1 only, so one"
    " ingest worker consumes (no shared subscription); about 1,200 to 2,700 QoS 1 messages/s;"
    " no persistence (a restart loses its sessions and queued messages); an unacknowledged"
    " message is not redelivered. Fine for this demo; install mosquitto for load."
)
T = TypeVar("T")
Broker = Literal["auto", "mosquitto", "amqtt", "none"]


@dataclass(frozen=True)
class DemoConfig:
    """Where the demo keeps its data, how big the fleet is, where everything listens."""

    data_dir: Path = Path("var")
    devices: int = 100
    workers: int = 2
    api_port: int = 8000
    ingest_port: int = 8001
    pg_port: int | None = None
    mqtt_port: int | None = None
    broker: Broker = "auto"
    summary_interval_s: float = 5.0


async def _in_thread(fn: Callable[[], T]) -> T:
    """Run blocking ``fn`` in a thread; if cancelled, let it finish before giving up."""
    future = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise


async def _wait_ready(child: Child, url: str, session: aiohttp.ClientSession) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        failure = child.failure()
        if failure is not None:
            raise DemoError(failure)
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
                last = f"{resp.status} {(await resp.text())[:200]}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = str(exc) or type(exc).__name__
        await asyncio.sleep(0.2)
    raise DemoError(
        f"{child.name} not ready after {_READY_TIMEOUT_S:.0f} s ({last}); see {child.log}"
    )


async def _create_database(server: PostgresServer) -> None:
    try:
        async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
            if await cur.fetchone() is None:
                await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.Error as exc:
        raise DemoError(f"cannot create the database {DATABASE}: {exc}") from exc


def _migrate(env: dict[str, str], logs: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ingest", "migrate"],
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=False,
    )
    with (logs / "migrate.log").open("a") as out:
        out.write(result.stdout + result.stderr)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
        raise DemoError(f"migrate failed: {lines[-1]}; see {logs / 'migrate.log'}")
    lines = result.stdout.strip().splitlines() or ["schema migrated"]
    return lines[-1]


class _Demo:
    """One run of the demo: what it started is stopped in reverse order on the way out."""

    def __init__(self, config: DemoConfig, out: TextIO, stack: contextlib.AsyncExitStack) -> None:
        self.config = config
        self.out = out
        self.stack = stack
        self.data_dir = config.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.pids: dict[str, int] = {"launcher": os.getpid()}
        self.children: list[Child] = []
        self.key = ""
        self.api_url = f"http://127.0.0.1:{config.api_port}"
        self.ingest_url = f"http://127.0.0.1:{config.ingest_port}"
        self.mqtt_url: str | None = None
        self.mqtt_protocol: MqttProtocol = "5"
        self.broker: MosquittoServer | AmqttServer | None = None

    def say(self, text: str = "") -> None:
        """Print a line for the user, at once."""
        print(text, file=self.out, flush=True)

    def _record(self, name: str, pid: int | None) -> None:
        if pid is not None:
            self.pids[name] = pid
        write_private(self.data_dir / "run.json", json.dumps(self.pids))

    def _prepare(self) -> tuple[int, int]:
        """Check ports and the data directory; return the PostgreSQL and MQTT ports."""
        config = self.config
        pid = running_launcher(self.data_dir)
        if pid is not None:
            raise DemoError(f"a demo is already running on {self.data_dir} (pid {pid})")
        for port, flag in ((config.api_port, "--api-port"), (config.ingest_port, "--ingest-port")):
            if not port_available(port):
                raise DemoError(
                    f"port {port} on 127.0.0.1 is in use (another demo or service?):"
                    f" stop it or choose another with {flag}"
                )
        self.logs.mkdir(parents=True, exist_ok=True)
        state = read_json(self.data_dir / "demo.json")
        pg_port = choose_port(config.pg_port, state.get("postgres_port"), _PG_PORT, "--pg-port")
        mqtt_port = choose_port(config.mqtt_port, state.get("mqtt_port"), _MQTT_PORT, "--mqtt-port")
        state |= {"postgres_port": pg_port, "mqtt_port": mqtt_port}
        (self.data_dir / "demo.json").write_text(json.dumps(state, indent=1) + "\n")
        self.stack.callback(lambda: (self.data_dir / "run.json").unlink(missing_ok=True))
        self._record("launcher", os.getpid())
        self.key = admin_key(self.data_dir)
        return pg_port, mqtt_port

    async def _start_database(self, port: int) -> PostgresServer:
        self.say(f"starting PostgreSQL on 127.0.0.1:{port} (data in {self.data_dir}/postgres)")
        pg = PostgresServer(self.data_dir / "postgres", port=port, durable=True)
        self.stack.push_async_callback(_in_thread, pg.stop)
        await _in_thread(pg.start)
        self._record("postgres", pg.pid)
        await _create_database(pg)
        return pg

    async def _start_broker(self, port: int) -> None:
        """Start the broker ``--broker`` names; ``auto``: Mosquitto, else amqtt, else none."""
        choice = self.config.broker
        if choice == "none":
            self.say("MQTT is off (--broker none): the fleet sends over HTTP only.")
            return
        broker: MosquittoServer | AmqttServer
        if choice in ("auto", "mosquitto"):
            try:
                binary = find_mosquitto()
            except ServiceNotInstalledError:
                if choice == "mosquitto":
                    raise
            else:
                self.say(f"starting Mosquitto on 127.0.0.1:{port}")
                broker = MosquittoServer(self.data_dir / "mosquitto", port=port, binary=binary)
                await self._run_broker("mosquitto", broker)
                return
        try:
            version = find_amqtt()
        except ServiceNotInstalledError:
            if choice == "amqtt":
                raise
            self.say(_NO_MQTT)
            return
        why = " (--broker amqtt)" if choice == "amqtt" else ", which is not installed"
        self.say(_AMQTT_LIMITS.format(version=version, why=why))
        self.say(f"starting amqtt on 127.0.0.1:{port}")
        broker = AmqttServer(self.data_dir / "amqtt", port=port, username="demo")
        self.mqtt_protocol = "3.1.1"
        await self._run_broker("amqtt", broker)

    async def _run_broker(self, name: str, broker: MosquittoServer | AmqttServer) -> None:
        self.stack.push_async_callback(_in_thread, broker.stop)
        await _in_thread(broker.start)
        self._record(name, broker.pid)
        self.broker = broker
        self.mqtt_url = broker.url

    async def _start_platform(self, db_url: str, session: aiohttp.ClientSession) -> None:
        """Migrate, then start the API and the ingest (stopped the other way round)."""
        config = self.config
        env = {"DATABASE_URL": db_url}
        self.say(await _in_thread(lambda: _migrate(env, self.logs)))
        api_env = env | {
            "API_HOST": "127.0.0.1",
            "API_PORT": str(config.api_port),
            "API_ADMIN_KEY": self.key,
        }
        ingest_env = env | {
            "MQTT_URL": self.mqtt_url or "none",
            "MQTT_CLIENT_ID": "demo-ingest",
            "MQTT_PROTOCOL": self.mqtt_protocol,
            "INGEST_HTTP_HOST": "127.0.0.1",
            "INGEST_HTTP_PORT": str(config.ingest_port),
            "ALERT_API_URL": self.api_url,
            "ALERT_EVAL_INTERVAL_S": "5",
        }
        ingest_args = ["ingest", "serve", "--workers", str(config.workers)]
        for name, args, child_env, url in (
            ("api", ["api", "serve"], api_env, self.api_url),
            ("ingest", ingest_args, ingest_env, self.ingest_url),
        ):
            self.say(f"starting {name} on {url}")
            child = spawn(name, args, child_env, self.logs / f"{name}.log")
            self.stack.push_async_callback(_in_thread, lambda c=child: c.stop(_STOP_TIMEOUT_S))
            self.children.append(child)
            self._record(name, child.proc.pid)
            await _wait_ready(child, f"{url}/readyz", session)

    async def _start_alerts(self, session: aiohttp.ClientSession) -> None:
        """Start the webhook receiver; make the alert rules and the webhook where missing."""
        receiver = await self.stack.enter_async_context(DemoReceiver(self.say))
        kept = await _in_thread(lambda: read_secret(self.data_dir / "webhook-secret"))
        made, receiver.secret = await ensure_alerts(
            session, self.api_url, self.key, receiver.url, kept
        )
        if receiver.secret != kept:
            write_private(self.data_dir / "webhook-secret", receiver.secret)
        if made:
            self.say(f"made the alert rules {', '.join(made)} (GET /v1/alert-rules)")
        self.say(f"webhook receiver on {receiver.url}: notifications print here as 'webhook: ...'")

    async def _start_fleet(self) -> asyncio.Task[Any]:
        """Register (first run) and start the simulated fleet; it is cancelled on the way out."""
        mqtt = self.mqtt_url is not None
        protocols = "mqtt,http,senml" if mqtt else "http,senml-http"
        run_config = RunConfig(
            devices=self.config.devices,
            duration_s=None,
            protocols=parse_protocols(protocols),
            prefix="demo" if mqtt else "demo-http",
            mqtt_protocol=self.mqtt_protocol,
        )
        fleet = Fleet.load(self.data_dir / ("fleet.json" if mqtt else "fleet-http.json"))
        api = await self.stack.enter_async_context(QueryApi(self.api_url, self.key))
        self.say(f"registering and starting {self.config.devices} simulated devices ({protocols})")
        endpoints = Endpoints(self.api_url, self.key, self.ingest_url, self.mqtt_url)
        task = asyncio.create_task(
            run_fleet(run_config, endpoints, fleet, Ledger(), api=api), name="demo-fleet"
        )

        async def stop() -> None:
            task.cancel()
            await asyncio.wait([task], timeout=_FLEET_STOP_S)
            if not task.done():
                self.say(f"the fleet did not stop within {_FLEET_STOP_S:g} s; stopping the rest")
                return
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()

        self.stack.push_async_callback(stop)
        return task

    async def run(self) -> int:
        """Start everything, print where to look, then watch and summarise until told to stop."""
        pg_port, mqtt_port = self._prepare()
        pg = await self._start_database(pg_port)
        await self._start_broker(mqtt_port)
        session = await self.stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        )
        await self._start_platform(pg.url_for(DATABASE), session)
        await self._start_alerts(session)
        fleet_task = await self._start_fleet()
        self._print_banner(pg)
        return await self._watch(fleet_task, pg, session)

    def _broker_line(self) -> str:
        if self.broker is None:
            return "off: devices send over HTTP"
        if isinstance(self.broker, AmqttServer):
            return f"{self.broker.url}  (amqtt, MQTT 3.1.1)"
        return f"{self.broker.url}  (Mosquitto)"

    def _print_banner(self, pg: PostgresServer) -> None:
        api_url, ingest_url, key = self.api_url, self.ingest_url, self.key
        auth = '-H "Authorization: Bearer $API_ADMIN_KEY"'
        first = "demo-00000" if self.mqtt_url else "demo-http-00000"
        storage = "TimescaleDB" if pg.with_timescaledb else "plain PostgreSQL"
        for line in (
            "",
            f"Open the console: {api_url}/  (sign in with the API_ADMIN_KEY below)",
            "",
            f"The platform is running; data lives in {self.data_dir} and stays between runs.",
            f"  query API    {api_url}  (OpenAPI: {api_url}/v1/openapi.json)",
            f"  ingest HTTP  {ingest_url}/v1/telemetry",
            f"  MQTT broker  {self._broker_line()}",
            f"  database     {pg.url_for(DATABASE)}  ({storage})",
            f"  metrics      {ingest_url}/metrics (ingest), {api_url}/metrics (api)",
            f"  alerts       {api_url}/v1/alerts (firing now), /v1/alerts/history, /v1/alert-rules",
            f"  logs         {self.logs}",
            "",
            f"API_ADMIN_KEY={key}",
            "",
            "Try, in another terminal:",
            f"  export API_ADMIN_KEY={key}",
            f"  curl -s {auth} {api_url}/v1/fleet",
            f"  curl -s {auth} '{api_url}/v1/devices?limit=5'",
            f"  curl -s {auth} {api_url}/v1/devices/{first}/latest",
            f"  curl -s {auth} '{api_url}/v1/devices/{first}/readings?bucket=1m&agg=avg,min,max'",
            f"  curl -s {auth} {api_url}/v1/alerts",
            f"  curl -s {ingest_url}/metrics | grep ^ingest_readings",
            "",
            "Ctrl-C stops everything; `make demo-clean` deletes the data.",
        ):
            self.say(line)

    async def _watch(
        self, fleet_task: asyncio.Task[Any], pg: PostgresServer, session: aiohttp.ClientSession
    ) -> int:
        """Check the parts twice a second and print the summary; DemoError when one stops."""
        summary = Summary(self.api_url, self.ingest_url, time.monotonic())
        headers = {"Authorization": f"Bearer {self.key}"}
        next_line = time.monotonic() + self.config.summary_interval_s
        while True:
            failures = [f for c in self.children if (f := c.failure()) is not None]
            if pg.pid is None:
                failures.append(f"PostgreSQL stopped; see {self.data_dir}/postgres/postgres.log")
            if self.broker is not None and not self.broker.running:
                failures.append(f"the MQTT broker stopped; see {self.broker.log_file}")
            if fleet_task.done():
                failures.append(f"the simulated fleet stopped: {fleet_task.exception()}")
            if failures:
                raise DemoError("; ".join(failures))
            if time.monotonic() >= next_line:
                self.say(await summary.line(session, headers))
                next_line = time.monotonic() + self.config.summary_interval_s
            await asyncio.sleep(0.5)


async def run_demo(config: DemoConfig, out: TextIO = sys.stdout) -> int:
    """Run the demo until SIGINT or SIGTERM (exit status 0) or until a part fails (DemoError)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping: list[int] = []

    def on_signal(signum: int) -> None:
        if not stopping:
            stopping.append(signum)
            print("\nstopping: fleet, ingest, api, broker, PostgreSQL", file=out, flush=True)
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with contextlib.AsyncExitStack() as stack:
            return await _Demo(config, out, stack).run()
    except asyncio.CancelledError:
        if not stopping:
            raise
        print("stopped", file=out, flush=True)
        return 0
    except ServiceError as exc:
        raise DemoError(str(exc)) from exc
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

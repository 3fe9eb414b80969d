"""MQTT intake over the pure-Python amqtt broker (MQTT 3.1.1), as ``make demo`` runs it.

A real amqtt broker, a real ``python -m ingest serve`` with ``MQTT_PROTOCOL=3.1.1`` and no
share group, and PostgreSQL: readings are stored once, bad messages dead-lettered, what is
published while the ingest is away arrives when it is back (its session is kept), and
nothing is acknowledged before it is committed. MQTT 3.1.1 with a share group is refused
at start, in one line.

amqtt never redelivers an unacknowledged message (it gives one up after 5 s without a
PUBACK, or when the subscriber disconnects), so these tests keep the ingest alive while it
holds messages: it retries them itself, as the database-cut test shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

import aiohttp
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from simulator.services import AmqttServer
from tests.e2e.helpers import count_readings, new_device, query, readings, reasons, wait_for
from tests.support.processes import ServiceProcess, ingest_env
from tests.support.proxy import TcpProxy

plain_only = pytest.mark.parametrize("storage_mode", ["plain"])


@pytest.fixture(scope="module")
def amqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AmqttServer]:
    """A private amqtt broker for this module."""
    with AmqttServer(tmp_path_factory.mktemp("amqtt")) as server:
        yield server


class Publisher:
    """A paho MQTT 3.1.1 client that publishes at QoS 1 and waits for the PUBACKs."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pub-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.username_pw_set(parts.username)
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()

    def send(self, topic: str, payloads: list[bytes]) -> None:
        """Publish every payload to ``topic`` and wait for the broker's PUBACKs."""
        infos = [self.client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(30)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _batches(count: int, seq0: int = 0) -> list[bytes]:
    """``count`` messages of 10 reading-sets (20 readings) each."""
    return [json.dumps(readings(10, seq0=seq0 + 10 * i)).encode() for i in range(count)]


def _ingest(db_url: str, amqtt: AmqttServer, tmp_path: Path, name: str) -> ServiceProcess:
    env = ingest_env(
        db_url,
        amqtt.url,
        mqtt_protocol="3.1.1",
        mqtt_share_group="",
        # One client id for every start: amqtt keeps the session of a returning client.
        mqtt_client_id=f"ingest-{name}",
    )
    return ServiceProcess("ingest", env, tmp_path / f"{name}.log")


async def _acks(url: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    match = re.search(r"^ingest_mqtt_acks_total ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def wait_for_acks(url: str, expected: int) -> None:
    """Wait until the ingest has acknowledged ``expected`` messages."""
    for _ in range(100):
        if await _acks(url) == expected:
            return
        await asyncio.sleep(0.1)
    assert await _acks(url) == expected


@plain_only
async def test_stored_once_and_bad_messages_dead_lettered(
    db_url: str, storage_mode: str, amqtt: AmqttServer, tmp_path: Path
) -> None:
    await new_device(db_url, "amq-1")
    with _ingest(db_url, amqtt, tmp_path, "once") as ingest, Publisher(amqtt.url) as pub:
        pub.send("telemetry/amq-1", _batches(20))
        pub.send("telemetry/amq-1", _batches(2))  # sent again: deduplicated
        pub.send("telemetry/amq-1", [b"not json"])
        pub.send("telemetry/stranger", [b'{"values": {"t": 1}}'])
        await wait_for(lambda: len(reasons(db_url)) == 2, what="2 dead letters")
        await wait_for(lambda: count_readings(db_url) == 400, what="400 readings")
        assert sorted(reasons(db_url)) == ["malformed_json", "unknown_device"]
        # Every message is acknowledged once it is committed, dead letters too.
        await wait_for_acks(ingest.url, 24)
    assert count_readings(db_url) == 400


@plain_only
async def test_published_while_the_ingest_is_away_arrive_when_it_is_back(
    db_url: str, storage_mode: str, amqtt: AmqttServer, tmp_path: Path
) -> None:
    await new_device(db_url, "amq-2")
    ingest = _ingest(db_url, amqtt, tmp_path, "away")
    with ingest, Publisher(amqtt.url) as pub:
        pub.send("telemetry/amq-2", _batches(5))
        await wait_for(lambda: count_readings(db_url) == 100, what="readings before")
        assert ingest.stop() == 0
        pub.send("telemetry/amq-2", _batches(5, seq0=1000))  # queued in the ingest's session
        ingest.start()
        await wait_for(lambda: count_readings(db_url) == 200, what="the queued readings")


@plain_only
@pytest.mark.faults
async def test_database_cut_nothing_acknowledged_then_everything_once(
    db_url: str,
    storage_mode: str,
    amqtt: AmqttServer,
    tmp_path: Path,
    tcp_proxy: Callable[[str, int], TcpProxy],
) -> None:
    await new_device(db_url, "amq-3")
    params = conninfo_to_dict(db_url)
    proxy = tcp_proxy(str(params["host"]), int(params["port"] or 5432))
    cut_url = make_conninfo(db_url, host="127.0.0.1", port=proxy.port)
    with _ingest(cut_url, amqtt, tmp_path, "cut") as ingest, Publisher(amqtt.url) as pub:
        pub.send("telemetry/amq-3", _batches(5))
        await wait_for(lambda: count_readings(db_url) == 100, what="readings before the cut")
        await wait_for_acks(ingest.url, 5)

        proxy.stop()
        pub.send("telemetry/amq-3", _batches(20, seq0=1000))
        # Longer than DB_RETRY_MAX_S (the writer gives up and the ingest retries later) and
        # than amqtt's 5 s wait for a PUBACK (it gives the deliveries up, the ingest keeps them).
        await asyncio.sleep(6)
        assert await _acks(ingest.url) == 5
        assert count_readings(db_url) == 100

        proxy.start()
        await wait_for(lambda: count_readings(db_url) == 500, timeout_s=30, what="catch-up")
        await wait_for_acks(ingest.url, 25)
    assert query(db_url, "SELECT count(*) = count(DISTINCT (metric_key, time)) FROM readings") == [
        (True,)
    ]


def test_mqtt_3_1_1_with_a_share_group_is_one_line_and_exit_1() -> None:
    env = os.environ | {
        "MQTT_URL": "mqtt://127.0.0.1:1883",
        "MQTT_PROTOCOL": "3.1.1",
        "MQTT_SHARE_GROUP": "ingest",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ingest", "serve"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "error: MQTT_PROTOCOL=3.1.1 has no shared subscriptions: set MQTT_SHARE_GROUP empty"
        " (now 'ingest') or use MQTT_PROTOCOL=5\n"
    )

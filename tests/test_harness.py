"""The test harness itself: real PostgreSQL, real Mosquitto, and the outage proxy."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import psycopg
import pytest
from paho.mqtt.enums import MQTTErrorCode
from psycopg.conninfo import make_conninfo

from simulator.services import MosquittoServer
from tests.support.db import DatabaseServer
from tests.support.mqtt import TestClient
from tests.support.proxy import TcpProxy


def test_postgres_round_trip(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v float8)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, i / 2) for i in range(100)])
        row = conn.execute("SELECT count(*), sum(v) FROM t").fetchone()
    assert row == (100, 2475.0)


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_gets_a_clean_database(empty_db_url: str, attempt: int) -> None:
    with psycopg.connect(empty_db_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE leftover (x int)")


@pytest.mark.timescale
def test_timescaledb_extension_loads(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute("CREATE TABLE m (time timestamptz NOT NULL, v float8)")
        conn.execute("SELECT create_hypertable('m', 'time')")
        conn.execute("INSERT INTO m VALUES (now(), 1)")
        row = conn.execute("SELECT count(*) FROM timescaledb_information.chunks").fetchone()
    assert row == (1,)


def test_mosquitto_publish_subscribe(mqtt_url: str) -> None:
    topic = f"harness/{uuid.uuid4().hex}"
    with TestClient(mqtt_url) as sub, TestClient(mqtt_url) as pub:
        sub.subscribe(topic, qos=1)
        for i in range(100):
            pub.publish(topic, str(i).encode(), qos=1)
        got = sub.receive(100)
    assert [int(m.payload) for m in got] == list(range(100))


def test_mosquitto_keeps_more_than_1000_queued_messages(
    mqtt_url: str, mosquitto: MosquittoServer | None
) -> None:
    if mosquitto is None:
        pytest.skip("TEST_MQTT_URL names an external broker whose queue limits are not ours")
    topic = f"harness/{uuid.uuid4().hex}"
    client_id = f"slow-{uuid.uuid4().hex[:8]}"
    # A persistent session that goes away: the broker must queue for it, not drop.
    with TestClient(mqtt_url, client_id, clean_start=True, session_expiry_s=300) as sub:
        sub.subscribe(topic, qos=1)
    with TestClient(mqtt_url) as pub:
        infos = [pub.publish(topic, str(i).encode(), qos=1) for i in range(5000)]
        for info in infos:
            info.wait_for_publish(10)
    with TestClient(mqtt_url, client_id, clean_start=False, session_expiry_s=300) as sub:
        got = sub.receive(5000, timeout_s=20)
    assert sorted(int(m.payload) for m in got) == list(range(5000))


def test_proxy_cuts_and_restores_a_database_connection(
    pg_server: DatabaseServer, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    proxy = tcp_proxy(*pg_server.host_port)
    via_proxy = make_conninfo(pg_server.admin_url, host="127.0.0.1", port=proxy.port)
    # autocommit: leaving the block must not send a COMMIT on the connection just cut (a
    # cut can leave it mid-command, and the COMMIT then fails outside pytest.raises).
    with psycopg.connect(via_proxy, connect_timeout=5, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        proxy.stop()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(via_proxy, connect_timeout=2).close()
    proxy.start()
    with psycopg.connect(via_proxy, connect_timeout=5) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_proxy_cuts_and_restores_an_mqtt_connection(
    mqtt_url: str, tcp_proxy: Callable[[str, int], TcpProxy]
) -> None:
    broker = TestClient(mqtt_url)
    proxy = tcp_proxy(broker.host, broker.port)
    via_proxy = f"mqtt://127.0.0.1:{proxy.port}"
    with TestClient(via_proxy) as client:
        proxy.stop()
        assert client.disconnected.wait(5)
        assert client.publish("harness/x", b"1", qos=1).rc == MQTTErrorCode.MQTT_ERR_NO_CONN
    with pytest.raises(ConnectionRefusedError):
        TestClient(via_proxy).connect()
    proxy.start()
    with TestClient(via_proxy) as client:
        assert client.client.is_connected()

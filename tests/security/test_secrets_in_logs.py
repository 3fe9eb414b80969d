"""No secret ever reaches a log, even at DEBUG level.

The ingest (JSON logs) and the query API run as processes with passwords in their
database and broker URLs; devices are registered and their tokens rotated; good and bad
tokens and keys are used. Then every byte the two processes wrote is searched for every
secret.
"""

from __future__ import annotations

import json
from pathlib import Path

from psycopg.conninfo import make_conninfo

from simulator.services import free_port
from tests.security.servers import request
from tests.security.test_auth import wait_until
from tests.support.mqtt import TestClient
from tests.support.processes import ServiceProcess

ADMIN_KEY = "ak_logsecret-ADMIN-0123456789abcdefghijklmnopqrstu"
DB_PASSWORD = "db-pass-LOGSECRET-1"
MQTT_PASSWORD = "mqtt-pass-LOGSECRET-2"
UNREACHABLE_PASSWORD = "mqtt-pass-LOGSECRET-3"
BAD_TOKEN = "dt_guessed-LOGSECRET-4"
BAD_KEY = "ak_guessed-LOGSECRET-5"


def test_no_secret_in_the_logs(plain_db_url: str, mqtt_url: str, tmp_path: Path) -> None:
    # Trust authentication: the password is carried everywhere and checked nowhere.
    db_url = make_conninfo(plain_db_url, password=DB_PASSWORD)
    broker = mqtt_url.replace("mqtt://", f"mqtt://ingest:{MQTT_PASSWORD}@")
    ingest_env = {
        "DATABASE_URL": db_url,
        "MQTT_URL": broker,
        "MQTT_SHARE_GROUP": "sec-logs",
        "MQTT_CLIENT_ID": "ingest-sec-logs",
        "LOG_FORMAT": "json",
    }
    api_env = {"DATABASE_URL": db_url, "API_ADMIN_KEY": ADMIN_KEY}
    unreachable = {
        "DATABASE_URL": db_url,
        "MQTT_URL": f"mqtt://ingest:{UNREACHABLE_PASSWORD}@127.0.0.1:{free_port()}",
        "MQTT_CLIENT_ID": "ingest-sec-unreachable",
        "LOG_FORMAT": "json",
    }
    services = [
        ServiceProcess("ingest", ingest_env, tmp_path / "ingest.log", log_level="DEBUG"),
        ServiceProcess("api", api_env, tmp_path / "api.log", log_level="DEBUG"),
        ServiceProcess(
            "ingest", unreachable, tmp_path / "lonely.log", log_level="DEBUG", ready_path="/healthz"
        ),
    ]
    secrets = [ADMIN_KEY, DB_PASSWORD, MQTT_PASSWORD, UNREACHABLE_PASSWORD, BAD_TOKEN, BAD_KEY]
    try:
        ingest, api, lonely = (service.start() for service in services)
        secrets += drive(ingest, api)
        wait_until(lambda: "cannot connect to the MQTT broker" in lonely.log(), "a failed connect")
    finally:
        for service in services:
            service.stop()
    logs = {service.log_path.name: service.log() for service in services}
    for name, text in logs.items():
        assert text, name
        for secret in secrets:
            assert secret not in text, (name, secret)
        assert "LOGSECRET" not in text, name
    for line in logs["ingest.log"].splitlines():
        json.loads(line)  # LOG_FORMAT=json: every line is one object


def drive(ingest: ServiceProcess, api: ServiceProcess) -> list[str]:
    """Register, rotate, post with good and bad credentials; return the tokens seen."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    body = json.dumps({"device_id": "sec-log-1"}).encode()
    status, created = request(api.url, "POST", "/v1/devices", body, admin)
    assert status == 201
    status, rotated = request(api.url, "POST", "/v1/devices/sec-log-1/token", None, admin)
    assert status == 200
    status, _ = request(
        api.url, "GET", "/v1/devices", headers={"Authorization": f"Bearer {BAD_KEY}"}
    )
    assert status == 401
    reading = json.dumps({"values": {"t": 1}}).encode()
    for token, expected in ((created["token"], 401), (BAD_TOKEN, 401), (rotated["token"], 200)):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        status, _ = request(ingest.url, "POST", "/v1/telemetry", reading, headers)
        assert status == expected
    broker = ingest.env["MQTT_URL"].replace(f"ingest:{MQTT_PASSWORD}@", "")
    with TestClient(broker) as device:
        device.publish("telemetry/sec-log-1", b'{"values": {"t": 2}, "device_id": "x"}')
        device.publish("telemetry/not-registered", b'{"values": {"t": 2}}')
    wait_until(lambda: "not-registered" in ingest.log(), "the unknown device to be logged")
    return [created["token"], rotated["token"]]

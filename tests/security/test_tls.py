"""TLS with a throwaway CA: MQTT (Mosquitto listener), ingest HTTPS and API HTTPS.

The device agent publishes and posts through TLS, trusting only the test CA (and with a
client certificate where the broker requires one); the ingest consumes over ``mqtts://``
with ``MQTT_CA_FILE``. Plain-text clients on TLS ports, and clients trusting another CA,
fail with a clear error while the servers keep serving.
"""

from __future__ import annotations

import gc
import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.cli import main as api_main
from device_client import load_config
from device_client.agent import build_transport
from device_client.errors import TransportError
from device_client.spool import SpoolRow
from device_client.transport import Batch, Outcome, Transport
from device_client.wire import encode_reading, format_ts
from ingest.cli import main as ingest_main
from simulator.services import BrokerTls, MosquittoServer
from tests.security.conftest import Pki
from tests.security.servers import register
from tests.security.test_auth import readings_of, wait_for_subscription, wait_until
from tests.support.processes import ServiceProcess

ADMIN_KEY = "ak_tls-admin-key-0123456789abcdefghijklmnopqrstuvw"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[MosquittoServer]:
    """A broker with a plain listener and a TLS one (no client certificate needed)."""
    tls = BrokerTls(pki.server_cert, pki.server_key, pki.ca_file)
    with MosquittoServer(tmp_path_factory.mktemp("mosquitto-tls"), tls=tls) as broker:
        yield broker


@pytest.fixture(scope="module")
def mtls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[MosquittoServer]:
    """A broker whose TLS listener requires a client certificate signed by the CA."""
    tls = BrokerTls(pki.server_cert, pki.server_key, pki.ca_file, require_certificate=True)
    with MosquittoServer(tmp_path_factory.mktemp("mosquitto-mtls"), tls=tls) as broker:
        yield broker


def device_transport(directory: Path, section: str, url: str, **tls: Path) -> Transport:
    """The device agent's transport, configured from a TOML file like a real device's."""
    # No ingest answers these devices: they count on the broker's PUBACK (no receipts).
    table = f'[mqtt]\nurl = "{url}"\nreceipts = "off"\n' if section == "mqtt" else section
    tls_lines = "".join(f'{name} = "{path}"\n' for name, path in tls.items())
    config = directory / f"device-{time.monotonic_ns()}.toml"
    config.write_text(
        f'device_id = "tls-dev-1"\ntransport = "{"mqtt" if section == "mqtt" else "http"}"\n'
        f'{table}\n[tls]\n{tls_lines}[spool]\npath = "spool.db"\n'
        '[[sensors]]\ntype = "synthetic"\nname = "t"\ninterval_s = 1.0\n'
    )
    return build_transport(load_config(config))


def refused(transport: Transport, match: str) -> None:
    """Assert that sending fails with a TransportError matching ``match``."""
    with warnings.catch_warnings():
        # paho drops the socket of a failed TLS handshake without closing it (paho-mqtt
        # 2.1, Client._ssl_wrap_socket); collect it here rather than in a later test.
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(TransportError, match=match):
            send_one(transport, 0)
        gc.collect()


def send_one(transport: Transport, seq: int) -> Outcome:
    """Connect, send one reading-set, and wait for the server's acknowledgement."""
    body = encode_reading(format_ts(datetime.now(UTC)), seq, {"t": 20.0 + seq})
    transport.connect()
    try:
        transport.submit(Batch([SpoolRow(seq, body)]))
        for _ in range(100):
            result = transport.poll(0.1)
            assert result.error is None, result.error
            if result.outcomes:
                return result.outcomes[0]
        raise AssertionError("no acknowledgement")
    finally:
        transport.close()


# --- MQTT ---------------------------------------------------------------------------------


def test_device_to_ingest_over_mqtts(
    plain_db_url: str, tls_broker: MosquittoServer, pki: Pki, tmp_path: Path
) -> None:
    register(plain_db_url, "tls-dev-1")
    env = {
        "DATABASE_URL": plain_db_url,
        "MQTT_URL": tls_broker.tls_url,
        "MQTT_CA_FILE": str(pki.ca_file),
        "MQTT_SHARE_GROUP": "sec-tls",
        "MQTT_CLIENT_ID": "ingest-sec-tls",
    }
    with ServiceProcess("ingest", env, tmp_path / "ingest.log") as ingest:
        wait_for_subscription(ingest)
        transport = device_transport(tmp_path, "mqtt", tls_broker.tls_url, ca_file=pki.ca_file)
        assert not send_one(transport, 1).rejected
        wait_until(lambda: readings_of(plain_db_url, "tls-dev-1") == 1, "the reading")


def test_device_with_a_client_certificate(
    mtls_broker: MosquittoServer, pki: Pki, tmp_path: Path
) -> None:
    url = mtls_broker.tls_url
    with_cert = device_transport(
        tmp_path,
        "mqtt",
        url,
        ca_file=pki.ca_file,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    assert not send_one(with_cert, 1).rejected
    without_cert = device_transport(tmp_path, "mqtt", url, ca_file=pki.ca_file)
    refused(without_cert, url)


@pytest.mark.parametrize("case", ["untrusted-ca", "plain-text-to-tls-port"])
def test_mqtt_clients_that_cannot_speak_tls_fail_cleanly(
    tls_broker: MosquittoServer, pki: Pki, tmp_path: Path, case: str
) -> None:
    if case == "untrusted-ca":
        transport = device_transport(
            tmp_path, "mqtt", tls_broker.tls_url, ca_file=pki.other_ca_file
        )
        match = "CERTIFICATE_VERIFY_FAILED"
    else:
        plain = tls_broker.tls_url.replace("mqtts://", "mqtt://")
        transport = device_transport(tmp_path, "mqtt", plain)
        match = "refused the connection|cannot connect|lost"
    refused(transport, match)
    # The broker still serves TLS clients.
    good = device_transport(tmp_path, "mqtt", tls_broker.tls_url, ca_file=pki.ca_file)
    assert not send_one(good, 3).rejected


# --- HTTP ---------------------------------------------------------------------------------


def test_device_posts_to_ingest_over_https(plain_db_url: str, pki: Pki, tmp_path: Path) -> None:
    token = register(plain_db_url, "tls-dev-1")
    env = {
        "DATABASE_URL": plain_db_url,
        "MQTT_URL": "none",
        "HTTP_TLS_CERT": str(pki.server_cert),
        "HTTP_TLS_KEY": str(pki.server_key),
    }
    with ServiceProcess("ingest", env, tmp_path / "ingest.log", ca_file=pki.ca_file) as ingest:
        assert ingest.url.startswith("https://")
        section = f'[http]\nurl = "{ingest.url}/v1/telemetry"\ntoken = "{token}"\n'
        transport = device_transport(tmp_path, section, "", ca_file=pki.ca_file)
        assert not send_one(transport, 1).rejected
        untrusting = device_transport(tmp_path, section, "", ca_file=pki.other_ca_file)
        refused(untrusting, "CERTIFICATE_VERIFY_FAILED")
        check_plain_text_refused(ingest)
        assert not send_one(
            device_transport(tmp_path, section, "", ca_file=pki.ca_file), 3
        ).rejected
    assert readings_of(plain_db_url, "tls-dev-1") == 2


def test_api_over_https(plain_db_url: str, pki: Pki, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": plain_db_url,
        "API_ADMIN_KEY": ADMIN_KEY,
        "API_TLS_CERT": str(pki.server_cert),
        "API_TLS_KEY": str(pki.server_key),
    }
    with ServiceProcess("api", env, tmp_path / "api.log", ca_file=pki.ca_file) as api:
        assert api.url.startswith("https://")
        check_plain_text_refused(api)
        request = urllib.request.Request(
            f"{api.url}/v1/devices", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        with urllib.request.urlopen(request, context=api.client_context) as response:
            assert json.loads(response.read())["devices"] == []
        other = ssl.create_default_context(cafile=pki.other_ca_file)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(request, context=other)


def plain_get(port: int, path: str) -> int:
    """GET over plain HTTP; return the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def check_plain_text_refused(service: ServiceProcess) -> None:
    """Plain HTTP to the TLS port gets no HTTP answer; the server keeps serving."""
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain_get(service.port, "/healthz")
    with urllib.request.urlopen(
        f"{service.url}/healthz", context=service.client_context
    ) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--api-tls-cert", "/nonexistent.pem"], "API_TLS_CERT and API_TLS_KEY go together"),
        (
            ["--api-tls-cert", "/nonexistent.pem", "--api-tls-key", "/nonexistent.key"],
            "cannot load API_TLS_CERT/API_TLS_KEY (/nonexistent.pem)",
        ),
        (["--http-tls-key", "/nonexistent.key"], "HTTP_TLS_CERT and HTTP_TLS_KEY go together"),
        (
            ["--http-tls-cert", "/nonexistent.pem", "--http-tls-key", "/nonexistent.key"],
            "cannot load HTTP_TLS_CERT/HTTP_TLS_KEY (/nonexistent.pem)",
        ),
    ],
)
def test_tls_settings_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if argv[0].startswith("--api"):
        status = api_main(["serve", *argv])
    else:
        status = ingest_main(["serve", "--mqtt-url", "none", *argv])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}")
    assert err.count("\n") == 1

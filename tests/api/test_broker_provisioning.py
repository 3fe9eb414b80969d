"""Device credentials reach a real Mosquitto through its dynamic security plugin."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from aiohttp.test_utils import TestClient as HttpClient
from paho.mqtt.reasoncodes import ReasonCode

from api import create_app
from api.broker import BrokerAdmin, ingest_account
from api.cli import main
from api.settings import BrokerSettings
from core.settings import DatabaseSettings
from simulator.services import MosquittoServer, free_port
from tests.api.conftest import ADMIN, ClientFactory, api_settings
from tests.ingest.helpers import add_device
from tests.support.mqtt import TestClient

ADMIN_PASSWORD = "dynsec-admin-pw"
INGEST_PASSWORD = "ingest-pw"
NOT_AUTHORIZED = 0x87


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """A private Mosquitto whose clients and ACLs live in the dynamic security plugin."""
    server = MosquittoServer(
        tmp_path_factory.mktemp("dynsec"), dynsec_admin_password=ADMIN_PASSWORD
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def admin_url(broker: MosquittoServer) -> str:
    return _url(broker, "admin", ADMIN_PASSWORD)


@pytest.fixture
def storage_mode() -> str:
    """Provisioning does not depend on the storage path: the plain one is enough."""
    return "plain"


async def _api(db_url: str, admin_url: str | None, aiohttp_client: ClientFactory) -> HttpClient:  # type: ignore[type-arg]
    broker = None if admin_url is None else BrokerSettings(api_broker_admin_url=admin_url)
    app = create_app(api_settings(), DatabaseSettings(database_url=db_url, db_pool_min=1), broker)
    return await aiohttp_client(app)


@pytest.fixture
async def client(db_url: str, admin_url: str, aiohttp_client: ClientFactory) -> HttpClient:  # type: ignore[type-arg]
    """An API client whose device changes are provisioned in ``broker``."""
    return await _api(db_url, admin_url, aiohttp_client)


@pytest.fixture
async def ingest(broker: MosquittoServer, admin_url: str) -> AsyncIterator[TestClient]:
    """A client of the ingest's account, subscribed as by default: to all telemetry."""
    await BrokerAdmin(admin_url).put_service(ingest_account("ingest", INGEST_PASSWORD, ""))
    client = TestClient(_url(broker, "ingest", INGEST_PASSWORD)).connect()
    assert client.subscribe("telemetry/#") < 0x80
    yield client
    client.close()


def _url(broker: MosquittoServer, username: str, password: str) -> str:
    return f"mqtt://{username}:{password}@127.0.0.1:{broker.port}"


def _refused(url: str) -> bool:
    """Whether the broker refuses a connection with ``url``'s credentials."""
    client = TestClient(url)
    try:
        client.connect()
    except ConnectionRefusedError:
        return True
    finally:
        client.close()
    return False


def _publish(client: TestClient, topic: str, *, retain: bool = False) -> int:
    """Publish at QoS 1 and return the PUBACK's reason code (below 0x80: accepted)."""
    done = threading.Event()
    reasons: dict[int, ReasonCode] = {}

    def on_publish(_c: object, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
        reasons[mid] = reason
        done.set()

    client.client.on_publish = on_publish
    info = client.client.publish(topic, b'{"values": {"t": 1}}', qos=1, retain=retain)
    assert done.wait(10), "no PUBACK"
    return reasons[info.mid].value


async def _register(client: HttpClient, device_id: str) -> str:  # type: ignore[type-arg]
    r = await client.post("/v1/devices", json={"device_id": device_id}, headers=ADMIN)
    assert r.status == 201, await r.text()
    token: str = (await r.json())["token"]
    return token


async def test_a_registered_device_publishes_only_its_own_topics(
    client: HttpClient,  # type: ignore[type-arg]
    broker: MosquittoServer,
    ingest: TestClient,
) -> None:
    token = await _register(client, "pump-1")
    await _register(client, "pump-2")
    device = TestClient(_url(broker, "pump-1", token)).connect()
    try:
        assert _publish(device, "telemetry/pump-1") < 0x80
        assert _publish(device, "telemetry/pump-1/senml") < 0x80
        assert _publish(device, "status/pump-1", retain=True) < 0x80
        assert _publish(device, "attributes/pump-1") < 0x80
        refused = (
            "telemetry/pump-2",
            "telemetry/pump-2/senml",
            "status/pump-2",
            "attributes/pump-2",
        )
        for topic in (*refused, "attributes/pump-1/x", "other"):
            assert _publish(device, topic) == NOT_AUTHORIZED, topic
        assert _publish(device, "telemetry/pump-1") < 0x80
    finally:
        device.close()
    # The refused messages never reach the ingest: only the three accepted ones arrive.
    topics = [m.topic for m in ingest.receive(3)]
    assert topics == ["telemetry/pump-1", "telemetry/pump-1/senml", "telemetry/pump-1"]


async def test_a_device_reads_its_own_receipts_and_no_one_else_s(
    client: HttpClient,  # type: ignore[type-arg]
    broker: MosquittoServer,
    ingest: TestClient,
) -> None:
    mine = TestClient(_url(broker, "rcv-1", await _register(client, "rcv-1"))).connect()
    other = TestClient(_url(broker, "rcv-2", await _register(client, "rcv-2"))).connect()
    try:
        assert mine.subscribe("receipts/rcv-1/#") < 0x80
        assert mine.subscribe("platform/receipts") < 0x80
        for stolen in ("receipts/rcv-2/#", "receipts/#", "receipts/+/agent", "#"):
            assert mine.subscribe(stolen) == NOT_AUTHORIZED, stolen
        assert other.subscribe("receipts/rcv-2/#") < 0x80
        assert _publish(mine, "receipts/rcv-1/agent") == NOT_AUTHORIZED  # only the ingest sends
        assert _publish(ingest, "receipts/rcv-2/agent") < 0x80
        assert _publish(ingest, "receipts/rcv-1/agent") < 0x80
        assert [m.topic for m in mine.receive(1)] == ["receipts/rcv-1/agent"]
        assert [m.topic for m in other.receive(1)] == ["receipts/rcv-2/agent"]
        assert mine.messages.empty()
    finally:
        mine.close()
        other.close()


async def test_unknown_devices_and_wrong_passwords_cannot_connect(
    client: HttpClient,  # type: ignore[type-arg]
    broker: MosquittoServer,
) -> None:
    token = await _register(client, "meter-1")
    assert not _refused(_url(broker, "meter-1", token))
    assert _refused(_url(broker, "meter-1", token + "x"))
    assert _refused(_url(broker, "meter-9", token))
    assert _refused(f"mqtt://127.0.0.1:{broker.port}")  # anonymous


async def test_rotation_and_deletion_take_effect_in_the_broker(
    client: HttpClient,  # type: ignore[type-arg]
    broker: MosquittoServer,
) -> None:
    old = await _register(client, "van-1")
    r = await client.post("/v1/devices/van-1/token", headers=ADMIN)
    assert r.status == 200
    new = (await r.json())["token"]
    assert _refused(_url(broker, "van-1", old))
    assert not _refused(_url(broker, "van-1", new))
    r = await client.delete("/v1/devices/van-1", headers=ADMIN)
    assert r.status == 204
    assert _refused(_url(broker, "van-1", new))
    # The id can be registered again, with a new password.
    again = await _register(client, "van-1")
    assert not _refused(_url(broker, "van-1", again))


async def test_rotation_provisions_a_device_registered_before_the_broker_was(
    db_url: str,
    admin_url: str,
    broker: MosquittoServer,
    aiohttp_client: ClientFactory,
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await add_device(conn, "old-1")
    api = await _api(db_url, admin_url, aiohttp_client)
    r = await api.post("/v1/devices/old-1/token", headers=ADMIN)
    assert r.status == 200
    assert not _refused(_url(broker, "old-1", (await r.json())["token"]))


async def test_without_the_broker_nothing_changes_and_the_answer_is_503(
    db_url: str, aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    plain = await _api(db_url, None, aiohttp_client)
    token = await _register(plain, "kept-1")
    nowhere = f"mqtt://admin:{ADMIN_PASSWORD}@127.0.0.1:{free_port()}"
    api = await _api(db_url, nowhere, aiohttp_client)
    r = await api.post("/v1/devices", json={"device_id": "lost-1"}, headers=ADMIN)
    assert r.status == 503
    assert r.headers["Retry-After"]
    assert (await r.json())["error"] == "broker_unavailable"
    assert (await api.get("/v1/devices/lost-1", headers=ADMIN)).status == 404
    r = await api.post("/v1/devices/kept-1/token", headers=ADMIN)
    assert r.status == 503
    r = await api.delete("/v1/devices/kept-1", headers=ADMIN)
    assert r.status == 503
    # Neither the rotation nor the deletion happened: the old token is still the one.
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute(
            "SELECT token_hash = sha256(%s::bytea) FROM devices WHERE device_id = 'kept-1'",
            [token.encode()],
        )
        assert await cur.fetchone() == (True,)
    assert "device lost-1" in caplog.text
    assert ADMIN_PASSWORD not in caplog.text
    assert "retry" in caplog.text


async def test_a_wrong_admin_password_is_503(
    db_url: str, broker: MosquittoServer, aiohttp_client: ClientFactory
) -> None:
    api = await _api(db_url, _url(broker, "admin", "wrong"), aiohttp_client)
    r = await api.post("/v1/devices", json={"device_id": "x-1"}, headers=ADMIN)
    assert r.status == 503
    assert (await api.get("/v1/devices/x-1", headers=ADMIN)).status == 404


def test_broker_setup_makes_the_service_accounts(
    broker: MosquittoServer, admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["broker-setup", "--api-broker-admin-url", admin_url]
    assert main(args) == 1
    assert "MQTT_INGEST_PASSWORD" in capsys.readouterr().err
    args += ["--mqtt-ingest-password", "i-pw", "--mqtt-simulator-password", "s-pw"]
    args += ["--mqtt-ingest-username", "ingest-2", "--mqtt-simulator-username", "sim-2"]
    assert main(args) == 0
    assert main(args) == 0  # again: replaced, not duplicated
    ingest = TestClient(_url(broker, "ingest-2", "i-pw")).connect()
    simulator = TestClient(_url(broker, "sim-2", "s-pw")).connect()
    try:
        assert ingest.subscribe("telemetry/#") < 0x80
        assert ingest.subscribe("attributes/+") < 0x80
        assert ingest.subscribe("$share/ingest/telemetry/#") >= 0x80  # no share group set
        assert _publish(ingest, "telemetry/any") == NOT_AUTHORIZED
        assert _publish(simulator, "status/any") == NOT_AUTHORIZED
        assert _publish(simulator, "telemetry/any") < 0x80
        assert [m.topic for m in ingest.receive(1)] == ["telemetry/any"]
        # Receipts: the ingest sends them and announces them; the simulator reads them all.
        assert simulator.subscribe("receipts/#") < 0x80
        assert _publish(ingest, "receipts/any/sim-2") < 0x80
        assert _publish(ingest, "platform/receipts") < 0x80
        assert [m.topic for m in simulator.receive(1)] == ["receipts/any/sim-2"]
    finally:
        ingest.close()
        simulator.close()


async def test_broker_setup_gives_devices_registered_earlier_the_receipts_acls(
    client: HttpClient,  # type: ignore[type-arg]
    broker: MosquittoServer,
    admin_url: str,
    db_url: str,
) -> None:
    token = await _register(client, "old-1")
    # As a device registered by an earlier version: no receipts in its role.
    await BrokerAdmin(admin_url).run(
        [
            {"command": "removeRoleACL", "rolename": "device:old-1", "acltype": t, "topic": topic}
            for topic in ("receipts/old-1/#", "platform/receipts")
            for t in ("subscribePattern", "publishClientReceive")
        ]
    )
    device = TestClient(_url(broker, "old-1", token)).connect()
    try:
        assert device.subscribe("receipts/old-1/#") == NOT_AUTHORIZED
        args = ["broker-setup", "--api-broker-admin-url", admin_url, "--devices"]
        args += ["--mqtt-ingest-password", "i-pw", "--database-url", db_url]
        assert await asyncio.to_thread(main, args) == 0
        assert await asyncio.to_thread(main, args) == 0  # again: nothing twice
        assert device.subscribe("receipts/old-1/#") < 0x80
        assert device.subscribe("platform/receipts") < 0x80
    finally:
        device.close()

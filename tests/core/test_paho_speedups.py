"""paho with the speedups behaves as paho alone: same values, bytes, errors and order."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.client import DISCONNECT, PUBACK, PUBLISH
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core import paho_speedups

PACKET_TYPES = [
    PacketTypes.CONNECT,
    PacketTypes.CONNACK,
    PacketTypes.PUBLISH,
    PacketTypes.PUBACK,
    PacketTypes.SUBSCRIBE,
    PacketTypes.SUBACK,
    PacketTypes.DISCONNECT,
    PacketTypes.AUTH,
    PacketTypes.WILLMESSAGE,
]
NAMES = list(Properties(PacketTypes.PUBLISH).names)  # type: ignore[no-untyped-call]
VALUES: list[object] = [0, 1, 2, 70_000, 300_000_000, "text", b"\x00\x01", [("k", "v")], [3]]


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    paho_speedups.uninstall()


def both(action: Callable[[], Any]) -> tuple[Any, Any]:
    """What ``action`` returns (or raises) with paho's own methods, then with the speedups."""
    outcomes: list[tuple[object, ...]] = []
    for fast in (False, True):
        if fast:
            assert paho_speedups.install()
        else:
            paho_speedups.uninstall()
        try:
            outcomes.append(("ok", action()))
        except Exception as exc:  # noqa: BLE001  (the error is the outcome compared)
            outcomes.append(("error", type(exc), str(exc)))
    paho_speedups.uninstall()
    return outcomes[0], outcomes[1]


def held(props: Properties) -> dict[str, object]:
    """The properties set on ``props`` (not paho's tables)."""
    tables = {"packetType", "types", "names", "properties"}
    return {k: v for k, v in vars(props).items() if k not in tables}


def test_the_installed_version_is_a_checked_one() -> None:
    assert paho_speedups.install()
    assert paho_speedups.installed()
    paho_speedups.uninstall()
    assert not paho_speedups.installed()


def test_an_unchecked_version_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paho_speedups, "version", lambda _name: "9.9.9")
    assert not paho_speedups.install()
    assert not paho_speedups.installed()


@pytest.mark.parametrize("packet_type", PACKET_TYPES)
def test_setting_every_property_with_every_kind_of_value(packet_type: int) -> None:
    for name in NAMES:
        for spelling in (name, name.replace(" ", "")):
            for value in VALUES:

                def build(spelling: str = spelling, value: object = value) -> object:
                    props = Properties(packet_type)  # type: ignore[no-untyped-call]
                    setattr(props, spelling, value)
                    setattr(props, spelling, value)  # twice: repeatable ones append
                    return held(props), str(props), props.json()  # type: ignore[no-untyped-call]

                slow, fast = both(build)
                assert slow == fast, (packet_type, spelling, value)


def test_unknown_names_are_refused_alike() -> None:
    def build() -> object:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.NoSuchProperty = 1
        return held(props)

    slow, fast = both(build)
    assert slow[0] == "error"
    assert slow == fast


def test_lookups_and_clear() -> None:
    def run() -> object:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        idents = [props.getIdentFromName(n.replace(" ", "")) for n in NAMES]  # type: ignore[no-untyped-call]
        names = [props.getNameFromIdent(i) for i in range(64)]  # type: ignore[no-untyped-call]
        props.ResponseTopic = "r"
        props.UserProperty = ("a", "b")
        props.clear()  # type: ignore[no-untyped-call]
        return idents, props.getIdentFromName("Nope"), names, held(props), props.isEmpty()  # type: ignore[no-untyped-call]

    slow, fast = both(run)
    assert slow == fast


_publish_properties = st.fixed_dictionaries(
    {},
    optional={
        "PayloadFormatIndicator": st.integers(0, 1),
        "MessageExpiryInterval": st.integers(0, 2**32 - 1),
        "ContentType": st.text(max_size=20),
        "ResponseTopic": st.text(min_size=1, max_size=40),
        "CorrelationData": st.binary(max_size=40),
        "TopicAlias": st.integers(1, 65535),
        "UserProperty": st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3),
    },
)


@given(_publish_properties)
def test_what_is_packed_unpacks_alike(fields: dict[str, object]) -> None:
    source = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in fields.items():
        if value != []:
            setattr(source, name, value)
    wire = source.pack()  # type: ignore[no-untyped-call]

    def decode() -> object:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.unpack(wire)  # type: ignore[no-untyped-call]
        return held(props), str(props), props.pack()  # type: ignore[no-untyped-call]

    slow, fast = both(decode)
    assert slow == fast
    if slow[0] == "ok":  # paho refuses a null or a surrogate in a string, either way
        assert slow[1][2] == wire


def _client_reading(chunks: list[bytes | None]) -> tuple[mqtt.Client, list[int]]:
    """A paho client whose socket reads give ``chunks`` in turn (None: nothing waiting yet)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    asked: list[int] = []

    def sock_recv(bufsize: int) -> bytes:
        asked.append(bufsize)
        chunk = chunks.pop(0) if chunks else b""
        if chunk is None:
            raise BlockingIOError
        return chunk[:bufsize]

    client._sock_recv = sock_recv  # type: ignore[method-assign]
    return client, asked


@given(
    st.lists(st.one_of(st.none(), st.binary(min_size=1, max_size=300)), max_size=20),
    st.lists(st.integers(1, 400), min_size=1, max_size=50),
)
def test_buffered_reads_give_the_same_bytes_in_the_same_order(
    chunks: list[bytes | None], sizes: list[int]
) -> None:
    """Whatever sizes paho asks for, it gets the stream as the socket gave it, no more."""
    stream = b"".join(chunk for chunk in chunks if chunk is not None)
    client, asked = _client_reading(list(chunks))
    buffer = paho_speedups.ReadBuffer(client)
    got = bytearray()
    for size in itertools.islice(itertools.cycle(sizes), 200):
        try:
            data = buffer.recv(size)
        except BlockingIOError:
            continue  # paho returns and reads again when the socket is readable
        if not data:
            break  # the peer closed
        assert len(data) <= size
        got += data
    assert bytes(got) == stream
    assert set(asked) <= {paho_speedups.READ_CHUNK}
    assert not buffer.pending


def test_a_buffer_holds_what_paho_has_not_read_until_cleared() -> None:
    client, asked = _client_reading([b"\x30\x05hello", b"more"])
    buffer = paho_speedups.ReadBuffer(client)

    def pending() -> bool:
        return buffer.pending

    assert client._sock_recv(1) == b"\x30"
    assert pending()
    assert client._sock_recv(1) == b"\x05"
    assert client._sock_recv(100) == b"hello"  # what is held, not a read that could block
    assert not pending()
    assert len(asked) == 1
    assert client._sock_recv(2) == b"mo"
    buffer.clear()  # the connection is gone: "re" must not reach the next one
    assert not pending()
    assert client._sock_recv(10) == b""


def _queued(command: int, qos: int = 0, pos: int = 0, data: bytes = b"") -> Any:
    return {
        "command": command,
        "mid": 1,
        "qos": qos,
        "pos": pos,
        "to_process": len(data) - pos,
        "packet": data,
        "info": None,
    }


def test_queued_acknowledgements_are_joined_into_one_write() -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    queue = client._out_packet
    acks = [_queued(PUBACK, data=bytes((0x40, 2, 0, i))) for i in range(1, 4)]
    receipt = _queued(PUBLISH | 0x02, qos=1, data=b"\x32receipt")
    qos0 = _queued(PUBLISH, data=b"\x30qos0")
    disconnect = _queued(DISCONNECT, data=b"\xe0\x00")
    partly = _queued(PUBACK, pos=2, data=b"\x40\x02\x00\x09")
    queue.extend([partly, *acks, receipt, qos0, acks[0], disconnect])
    paho_speedups.join_writes(client)
    assert [p["packet"] for p in queue] == [
        partly["packet"],  # partly written already: stays as it is, first
        b"".join(a["packet"] for a in acks) + receipt["packet"],
        qos0["packet"],  # paho calls on_publish after writing a QoS 0 message
        acks[0]["packet"],
        disconnect["packet"],  # paho closes the socket after writing it
    ]
    joined = queue[1]
    assert (joined["command"], joined["pos"], joined["to_process"]) == (
        PUBACK,
        0,
        len(joined["packet"]),
    )
    assert queue[2] is qos0
    assert queue[3] is acks[0]  # a run of one is left as it is
    assert queue[4] is disconnect


def test_messages_go_to_on_message_directly() -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, userdata="mine")
    seen: list[tuple[object, object]] = []
    client.on_message = lambda _c, userdata, msg: seen.append((userdata, msg.payload))
    assert paho_speedups.deliver_directly(client)
    message = mqtt.MQTTMessage(mid=1, topic=b"telemetry/d1")
    message.payload = b"{}"
    client._handle_on_message(message)
    assert seen == [("mine", b"{}")]

"""paho with the speedups behaves as paho alone: same values, bytes, errors and order."""

from __future__ import annotations

import itertools
import socket
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
    paho_speedups.checked.cache_clear()
    try:
        assert not paho_speedups.install()
        assert not paho_speedups.installed()
        assert not paho_speedups.skip_untracked_pubacks(mqtt.Client(CallbackAPIVersion.VERSION2))
    finally:
        monkeypatch.undo()
        paho_speedups.checked.cache_clear()


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


_UNPACKED_BY = [PacketTypes.PUBLISH, PacketTypes.PUBACK, PacketTypes.CONNACK]
# A property block: each property's identifier, then a value behind a two-byte length (as
# strings and binary data are; other kinds read those bytes their own way), with a block
# length that may be true or off: paho's values and errors must come out alike.
_property = st.tuples(
    st.integers(0, 45), st.one_of(st.binary(max_size=6), st.text(max_size=4).map(str.encode))
)


def _block(parts: list[tuple[int, bytes]], length_offset: int) -> bytes:
    body = b"".join(
        bytes((ident,)) + len(value).to_bytes(2, "big") + value for ident, value in parts
    )
    return bytes((max(0, len(body) + length_offset) % 256,)) + body + b"payload"


def _assert_unpacked_alike(wire: bytes, packet_type: int) -> None:
    def decode() -> object:
        props = Properties(packet_type)  # type: ignore[no-untyped-call]
        _same, used = props.unpack(wire)  # type: ignore[no-untyped-call]
        return held(props), used

    slow, fast = both(decode)
    assert slow == fast


@given(st.lists(_property, max_size=5), st.integers(-3, 3), st.sampled_from(_UNPACKED_BY))
def test_property_blocks_unpack_alike(
    parts: list[tuple[int, bytes]], length_offset: int, packet_type: int
) -> None:
    _assert_unpacked_alike(_block(parts, length_offset), packet_type)


@pytest.mark.parametrize("text", ["a\x00b", "\ufeffa", "fine", "é"])
def test_strings_paho_refuses_are_refused_alike(text: str) -> None:
    for ident in (3, 8):  # Content Type, Response Topic
        _assert_unpacked_alike(_block([(ident, text.encode())], 0), PacketTypes.PUBLISH)


@given(st.binary(max_size=40), st.sampled_from(_UNPACKED_BY))
def test_any_bytes_unpack_alike(wire: bytes, packet_type: int) -> None:
    _assert_unpacked_alike(wire, packet_type)


@pytest.fixture
def connected() -> Iterator[Callable[[], tuple[mqtt.Client, socket.socket]]]:
    """Makes MQTT 5 clients whose socket is one end of a pair; gives the other end too."""
    sockets: list[socket.socket] = []

    def make() -> tuple[mqtt.Client, socket.socket]:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ours, theirs = socket.socketpair()
        sockets.extend((ours, theirs))
        theirs.settimeout(0)
        client._sock = ours
        return client, theirs

    yield make
    for sock in sockets:
        sock.close()


def _sent(peer: socket.socket) -> bytes:
    try:
        return peer.recv(65536)
    except BlockingIOError:
        return b""


def test_an_untracked_publish_sends_what_paho_would_and_keeps_nothing(
    connected: Callable[[], tuple[mqtt.Client, socket.socket]],
) -> None:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.CorrelationData = b"\x00\x07"
    paho_client, paho_peer = connected()
    paho_client.publish("receipts/d1/x", b"{}", qos=1, properties=props)
    client, peer = connected()
    paho_speedups.publish_untracked(client, "receipts/d1/x", b"{}", props)
    assert _sent(peer) == _sent(paho_peer) != b""
    assert len(paho_client._out_messages) == 1
    assert not client._out_messages  # nothing to resend, nothing to wait on


def test_an_untracked_publish_uses_no_identifier_paho_waits_on(
    connected: Callable[[], tuple[mqtt.Client, socket.socket]],
) -> None:
    client, peer = connected()
    client.publish("kept", b"1", qos=1)  # mid 1, awaiting its PUBACK
    _sent(peer)
    client._last_mid = 0  # the identifiers wrapped around
    paho_speedups.publish_untracked(client, "receipts/d1", b"{}", Properties(PacketTypes.PUBLISH))  # type: ignore[no-untyped-call]
    packet = _sent(peer)
    topic_end = 4 + len(b"receipts/d1")
    assert packet[topic_end : topic_end + 2] == (2).to_bytes(2, "big")


@pytest.mark.parametrize(
    ("ack", "paho_handles"),
    [
        (b"\x00\x09", False),  # success, no reason code
        (b"\x00\x09\x10", False),  # no matching subscribers: a success
        (b"\x00\x09\x87", True),  # not authorized: paho's to handle
        (b"\x00\x09\x00\x00", True),  # properties: paho's to decode
        (b"\x00\x01", True),  # a message paho keeps
    ],
)
def test_pubacks_of_untracked_messages_end_early(
    connected: Callable[[], tuple[mqtt.Client, socket.socket]], ack: bytes, paho_handles: bool
) -> None:
    client, _peer = connected()
    published: list[int] = []
    client.on_publish = lambda _c, _u, mid, _rc, _p: published.append(mid)
    client.publish("kept", b"1", qos=1)  # mid 1
    handled: list[str] = []
    paho_handle = client._handle_pubackcomp

    def spy(cmd: Any) -> Any:
        handled.append(cmd)
        return paho_handle(cmd)

    client._handle_pubackcomp = spy  # type: ignore[method-assign]
    assert paho_speedups.skip_untracked_pubacks(client)
    client._in_packet["command"] = PUBACK
    client._in_packet["packet"] = bytearray(ack)
    assert client._packet_handle() == mqtt.MQTT_ERR_SUCCESS
    assert bool(handled) == paho_handles
    assert published == ([1] if ack == b"\x00\x01" else [])


def test_a_receipt_request_is_unpacked_without_paho(monkeypatch: pytest.MonkeyPatch) -> None:
    source = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    source.ResponseTopic = "receipts/d1/x"
    source.CorrelationData = b"\x00\x07"
    source.MessageExpiryInterval = 60
    wire = source.pack()  # type: ignore[no-untyped-call]

    def refuse(_self: Properties, _buffer: bytes) -> None:
        raise AssertionError("paho's own unpack was used")

    monkeypatch.setattr(paho_speedups, "_paho_unpack", refuse)
    assert paho_speedups.install()
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    assert props.unpack(wire + b"{}") == (props, len(wire))  # type: ignore[no-untyped-call]
    assert held(props) == held(source)

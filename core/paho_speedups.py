"""Faster MQTT 5 properties in paho-mqtt, by sharing tables it builds anew each time.

paho's :class:`~paho.mqtt.properties.Properties` builds its tables of property names,
identifiers and types (three dicts and a list, about 30 entries) in every instance, and
finds a name or an identifier by walking them; paho makes one instance for every MQTT 5
PUBLISH it receives and for every PUBACK of a message it sent. On the ingest's receiving
worker that was a third of the CPU a message costs.

:func:`install` replaces five of its methods with ones that read the same tables, built
once by paho's own ``__init__``, through dicts: ``__init__`` shares them (paho only reads
them), ``clear`` deletes only the properties that are set, the name and identifier lookups
are dict lookups, and ``__setattr__`` sets a property at once where paho's checks would
pass it unchanged (a known name, for this packet type, with no range to check and not
repeatable), handing anything else to paho's own. What a ``Properties`` holds, packs,
unpacks, prints and refuses stays the same (``tests/core/test_paho_speedups.py`` checks
it against the originals). It applies only to the paho versions it was checked with, and
otherwise logs and leaves paho as it is.

Three more, for one client that receives much (the ingest's consumer), each on that client
only: :class:`ReadBuffer` reads the socket in large chunks instead of three or four system
calls a packet, :func:`join_writes` sends the acknowledgements queued together in one
system call instead of one each, and :func:`deliver_directly` hands each message to
``on_message`` without paho's search for per-topic callbacks under two locks.

And two for a client that publishes a QoS 1 message for every message received (the
ingest's commit receipts): :func:`publish_untracked` sends one without the objects paho
keeps to resend it after a reconnect (a receipt lost that way is recovered by the device,
which sends its message again), and :func:`skip_untracked_pubacks` ends the PUBACK of such
a message without decoding it into objects.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
from importlib.metadata import version
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK, PUBLISH
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = [
    "CHECKED_VERSIONS",
    "READ_CHUNK",
    "ReadBuffer",
    "checked",
    "deliver_directly",
    "install",
    "installed",
    "join_writes",
    "publish_untracked",
    "skip_untracked_pubacks",
    "uninstall",
]

log = logging.getLogger(__name__)

#: paho-mqtt releases whose Properties these replacements were checked against.
CHECKED_VERSIONS = frozenset({"2.1.0", "2.2.0"})

_ORIGINALS = {
    name: Properties.__dict__[name]
    for name in (
        "__init__",
        "__setattr__",
        "clear",
        "getIdentFromName",
        "getNameFromIdent",
        "unpack",
    )
}
_paho_setattr = _ORIGINALS["__setattr__"]
_paho_unpack = _ORIGINALS["unpack"]
_TEMPLATE = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_TABLES = {key: _TEMPLATE.__dict__[key] for key in ("types", "names", "properties")}
_NAMES: dict[str, int] = _TEMPLATE.names
_IDENT_BY_NAME: dict[str, int] = {}
for _name, _ident in _NAMES.items():
    _IDENT_BY_NAME.setdefault(_name.replace(" ", ""), _ident)  # the first wins, as in paho
# The last wins, as in paho (the names are one to one, so either would do).
_NAME_BY_IDENT = {ident: name for name, ident in _NAMES.items()}
_PACKETS_BY_IDENT: dict[int, list[int]] = {
    ident: packets for ident, (_type, packets) in _TEMPLATE.properties.items()
}
_FIRST_FAILURE = 0x80  # MQTT 5 reason codes from here on are failures (2.4)
_PAHO_OWN = frozenset({"packetType", "types", "names", "properties"})
# The properties paho checks the value of, or lets repeat (their values are lists).
_CHECKED_BY_PAHO = frozenset(
    {
        "ReceiveMaximum",
        "TopicAlias",
        "TopicAliasMaximum",
        "MaximumPacketSize",
        "SubscriptionIdentifier",
        "RequestResponseInformation",
        "RequestProblemInformation",
        "PayloadFormatIndicator",
        "UserProperty",
    }
)
# How :func:`_unpack` reads the value of each property it reads itself: a fixed-size
# integer (its byte count), or a length-prefixed string ("utf-8") or binary value ("bytes").
# Repeatable properties, Variable Byte Integers and those paho checks are paho's to read.
_VALUE_KINDS: dict[str, int | str] = {
    "Byte": 1,
    "Two Byte Integer": 2,
    "Four Byte Integer": 4,
    "Binary Data": "bytes",
    "UTF-8 Encoded String": "utf-8",
}
_READ_BY_IDENT: dict[int, tuple[str, int | str, list[int]]] = {
    ident: (_NAME_BY_IDENT[ident].replace(" ", ""), _VALUE_KINDS[_TEMPLATE.types[kind]], packets)
    for ident, (kind, packets) in _TEMPLATE.properties.items()
    if _TEMPLATE.types[kind] in _VALUE_KINDS
    and _NAME_BY_IDENT[ident].replace(" ", "") not in _CHECKED_BY_PAHO
}
# Characters paho refuses in a UTF-8 string property (MQTT 1.5.4).
_REFUSED_CHARACTERS = re.compile("[\x00\ud800-\udfff\ufeff]")


def _init(self: Properties, packetType: int) -> None:  # noqa: N803  (paho's name)
    fields = self.__dict__
    fields["packetType"] = packetType
    fields.update(_TABLES)


def _setattr(self: Properties, name: str, value: object) -> None:
    name = name.replace(" ", "")  # paho sets "Response Topic" as often as "ResponseTopic"
    ident = _IDENT_BY_NAME.get(name)
    if (
        ident is None
        or name in _CHECKED_BY_PAHO
        or self.__dict__["packetType"] not in _PACKETS_BY_IDENT[ident]
    ):
        _paho_setattr(self, name, value)  # its own checks, errors and private names
    else:
        object.__setattr__(self, name, value)


def _clear(self: Properties) -> None:
    for name in _IDENT_BY_NAME.keys() & self.__dict__.keys():
        delattr(self, name)


def _ident_from_name(_self: Properties, compressedName: str) -> int:  # noqa: N803
    return _IDENT_BY_NAME.get(compressedName, -1)


def _name_from_ident(_self: Properties, identifier: int) -> str | None:
    return _NAME_BY_IDENT.get(identifier)


def _unpack(self: Properties, buffer: bytes) -> tuple[Properties, int]:
    # Under 128 bytes of properties, each of them read here: one pass over the bytes.
    # Anything else (a longer block, a property paho reads or checks itself, a repeat, a
    # value running past the block, a refused string) goes to paho's own from the start.
    end = 1 + buffer[0] if buffer and buffer[0] < 0x80 else 0
    if end and end <= len(buffer):
        self.clear()  # type: ignore[no-untyped-call]
        if _read_properties(self.__dict__, buffer, end):
            return self, end
    return _paho_unpack(self, buffer)  # type: ignore[no-any-return]  # it clears them again


def _read_properties(fields: dict[str, Any], buffer: bytes, end: int) -> bool:
    """Set the properties in ``buffer[1:end]`` in ``fields``; False at one for paho to read."""
    packet_type = fields["packetType"]
    pos = 1
    while pos < end:
        read = _READ_BY_IDENT.get(buffer[pos])
        if read is None or read[0] in fields or packet_type not in read[2]:
            return False
        name, kind, _packets = read
        pos += 1
        value: object
        if isinstance(kind, int):
            value, pos = int.from_bytes(buffer[pos : pos + kind], "big"), pos + kind
        else:
            start = pos + 2
            pos = start + (buffer[pos] << 8 | buffer[pos + 1] if start <= end else 0)
            value = raw = buffer[start:pos]
            if kind == "utf-8":
                try:
                    value = raw.decode()
                except UnicodeDecodeError:
                    return False
                if _REFUSED_CHARACTERS.search(value):
                    return False
        if pos > end:
            return False
        fields[name] = value
    return True


_REPLACEMENTS: dict[str, Any] = {
    "__init__": _init,
    "__setattr__": _setattr,
    "clear": _clear,
    "getIdentFromName": _ident_from_name,
    "getNameFromIdent": _name_from_ident,
    "unpack": _unpack,
}


def installed() -> bool:
    """Whether paho's Properties runs the replacements now."""
    return all(Properties.__dict__[name] is new for name, new in _REPLACEMENTS.items())


@functools.cache
def checked() -> bool:
    """Whether the installed paho-mqtt is one these speedups were checked against."""
    return version("paho-mqtt") in CHECKED_VERSIONS


def install() -> bool:
    """Replace the methods where paho is a checked version; say whether they are in place."""
    if not checked():
        found = version("paho-mqtt")
        log.info("paho-mqtt %s: MQTT 5 property speedups not applied (not checked)", found)
        return False
    for name, new in _REPLACEMENTS.items():
        setattr(Properties, name, new)
    return True


def uninstall() -> None:
    """Put paho's own methods back (for tests that compare the two)."""
    for name, original in _ORIGINALS.items():
        setattr(Properties, name, original)


#: Bytes a :class:`ReadBuffer` asks of the socket at once.
READ_CHUNK = 65_536


class ReadBuffer:
    """Serves paho's socket reads of one client from a buffer filled a chunk at a time.

    paho reads a packet as its first byte, its length a byte at a time, then its body: three
    or four system calls a packet. Installed on a client (paho's ``_sock_recv``, through
    which it makes every read), a read takes the bytes from this buffer and refills it with
    one call of paho's own ``_sock_recv`` of :data:`READ_CHUNK` bytes when it is empty, so
    a closed socket and TLS's want-read and want-write mean what they did. The bytes paho
    gets are the same, in the same order.

    Bytes held here are not seen by an event loop's selector: whoever drives the client
    reads again while :attr:`pending` (which also counts what a TLS socket has decrypted
    but not handed out), and calls :meth:`clear` when the client's socket changes.
    """

    def __init__(self, client: mqtt.Client) -> None:
        self._client = client
        self._paho_recv = client._sock_recv  # noqa: SLF001  (paho's one way in for reads)
        self._data = b""
        self._offset = 0
        client._sock_recv = self.recv  # type: ignore[method-assign]  # noqa: SLF001

    @property
    def pending(self) -> bool:
        """Whether bytes are waiting that no socket readiness will announce."""
        if self._offset < len(self._data):
            return True
        sock = self._client.socket()
        return isinstance(sock, ssl.SSLSocket) and sock.pending() > 0

    def clear(self) -> None:
        """Drop what is held (the connection it came from is gone)."""
        self._data, self._offset = b"", 0

    def recv(self, bufsize: int) -> bytes:
        """Return up to ``bufsize`` bytes, as ``socket.recv`` does (b"" when the peer closed)."""
        data, start = self._data, self._offset
        if start >= len(data):
            data = self._paho_recv(READ_CHUNK)
            if not data:
                return data
            self._data, start = data, 0
        end = start + bufsize
        self._offset = end
        return data[start:end]


def deliver_directly(client: mqtt.Client) -> bool:
    """Have ``client`` call its ``on_message`` for every message, found no other way.

    paho looks for callbacks added with ``message_callback_add`` for every message, under
    its callback lock, then calls ``on_message`` under another. For a client that adds
    none and is driven from one thread, that is the same call, without the search and the
    locks. An error in ``on_message`` propagates, as with paho's default
    ``suppress_exceptions=False``. Applies only to checked paho versions; says whether it did.
    """
    if not checked():
        return False

    def handle(message: mqtt.MQTTMessage) -> None:
        on_message = client.on_message
        if on_message is not None:
            on_message(client, client.user_data_get(), message)

    client._handle_on_message = handle  # type: ignore[method-assign]  # noqa: SLF001
    return True


def join_writes(client: mqtt.Client) -> None:
    """Join each run of queued PUBACKs and QoS 1 or 2 PUBLISHes of ``client`` into one write.

    paho writes every packet it has queued with a system call of its own: one a message for
    a consumer that acknowledges what it receives. Call this before ``loop_write``. A
    joined run is one queued packet holding their bytes in order, which paho writes (in
    parts if the socket takes only some) as it would any packet. Nothing is lost by the
    join: paho does nothing when those packets are written (a QoS 1 or 2 PUBLISH is done
    when its PUBACK arrives, not when it is sent), and what it does for a QoS 0 PUBLISH,
    a DISCONNECT or anything else stays with the packet, which is never joined. A packet
    partly written already is not joined either.
    """
    queue = client._out_packet  # noqa: SLF001  (paho's queue of packets to write)
    if len(queue) < 2:
        return
    joined: list[Any] = []
    run: list[Any] = []
    for packet in queue:
        kind = packet["command"] & 0xF0
        if packet["pos"] == 0 and (kind == PUBACK or (kind == PUBLISH and packet["qos"] > 0)):
            run.append(packet)
            continue
        _end_run(run, joined)
        joined.append(packet)
    _end_run(run, joined)
    if len(joined) < len(queue):
        queue.clear()
        queue.extend(joined)


def _end_run(run: list[Any], joined: list[Any]) -> None:
    """Append the packets of ``run`` to ``joined``: one as it is, more as one PUBACK."""
    if len(run) == 1:
        joined.append(run[0])
    elif run:
        data = b"".join(packet["packet"] for packet in run)
        joined.append(
            {
                "command": PUBACK,  # paho does nothing after writing one
                "mid": 0,
                "qos": 0,
                "pos": 0,
                "to_process": len(data),
                "packet": data,
                "info": None,
            }
        )
    run.clear()


def publish_untracked(
    client: mqtt.Client, topic: str, payload: bytes, properties: Properties
) -> None:
    """Queue a QoS 1 PUBLISH of ``payload`` on ``topic`` that paho does not keep.

    paho's ``publish`` keeps a message object (with a lock and a condition) until its
    PUBACK, to send it again after a reconnect that resumes the session. For a message
    whose loss the sender recovers from otherwise (a commit receipt: the device sends its
    message again), that is most of the cost of sending it. The packet is built and queued
    by paho's own ``_send_publish``, with a packet identifier paho is not waiting on; its
    PUBACK is ignored by paho as one it does not know (faster with
    :func:`skip_untracked_pubacks`). Nothing is sent while the client is disconnected.
    Call it on the thread that drives the client, with a checked paho version (:func:`checked`),
    and a topic that :meth:`paho.mqtt.client.Client.publish` would accept.
    """
    waiting = client._out_messages  # noqa: SLF001  (paho's QoS > 0 messages awaiting their ack)
    mid = client._mid_generate()  # noqa: SLF001
    while mid in waiting:
        mid = client._mid_generate()  # noqa: SLF001
    client._send_publish(mid, topic.encode(), payload, 1, properties=properties)  # noqa: SLF001


def skip_untracked_pubacks(client: mqtt.Client) -> bool:
    """End a successful PUBACK for a message ``client`` does not keep before decoding it.

    paho decodes every PUBACK into a packet, a reason code and a properties object before it
    finds that it is waiting on no message of that identifier and does nothing. A PUBACK
    without properties and with a reason code of success (none, or below 0x80, such as "no
    matching subscribers") of a message paho does not keep now stops at that finding; every
    other PUBACK goes to paho's own handler, so one paho keeps (or one carrying a failure or
    properties) is handled as before. Only paho's debug log line for the skipped PUBACK is not
    written. Applies only to checked paho versions; says whether it did.
    """
    if not checked():
        return False
    paho_handle = client._handle_pubackcomp  # noqa: SLF001

    def handle(cmd: Any) -> MQTTErrorCode:
        packet = client._in_packet["packet"]  # noqa: SLF001  (the packet being handled)
        if (
            cmd == "PUBACK"
            and (len(packet) == 2 or (len(packet) == 3 and packet[2] < _FIRST_FAILURE))
            and (packet[0] << 8 | packet[1]) not in client._out_messages  # noqa: SLF001
        ):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return paho_handle(cmd)

    client._handle_pubackcomp = handle  # type: ignore[method-assign]  # noqa: SLF001
    return True

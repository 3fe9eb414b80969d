"""paho's Properties with the speedups behave as paho's own: same values, bytes and errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
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

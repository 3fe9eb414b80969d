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
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["CHECKED_VERSIONS", "install", "installed", "uninstall"]

log = logging.getLogger(__name__)

#: paho-mqtt releases whose Properties these replacements were checked against.
CHECKED_VERSIONS = frozenset({"2.1.0", "2.2.0"})

_ORIGINALS = {
    name: Properties.__dict__[name]
    for name in ("__init__", "__setattr__", "clear", "getIdentFromName", "getNameFromIdent")
}
_paho_setattr = _ORIGINALS["__setattr__"]
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


_REPLACEMENTS: dict[str, Any] = {
    "__init__": _init,
    "__setattr__": _setattr,
    "clear": _clear,
    "getIdentFromName": _ident_from_name,
    "getNameFromIdent": _name_from_ident,
}


def installed() -> bool:
    """Whether paho's Properties runs the replacements now."""
    return all(Properties.__dict__[name] is new for name, new in _REPLACEMENTS.items())


def install() -> bool:
    """Replace the methods where paho is a checked version; say whether they are in place."""
    found = version("paho-mqtt")
    if found not in CHECKED_VERSIONS:
        log.info("paho-mqtt %s: MQTT 5 property speedups not applied (not checked)", found)
        return False
    for name, new in _REPLACEMENTS.items():
        setattr(Properties, name, new)
    return True


def uninstall() -> None:
    """Put paho's own methods back (for tests that compare the two)."""
    for name, original in _ORIGINALS.items():
        setattr(Properties, name, original)

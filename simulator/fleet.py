"""The fleet file: the virtual devices, their profiles, protocols and tokens.

A JSON file, so that a later ``run`` or ``load`` resumes the same fleet: devices are
registered through the API once, and each device goes on from its last ``seq`` and
time, so a resumed run never re-uses a reading's identity::

    {"version": 1, "devices": [{"device_id": "sim-00000", "profile": "pump",
      "protocol": "mqtt", "token": "dt_...", "seq": 41, "last_ts_ms": 1795255200123}]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from simulator.errors import ConfigError
from simulator.faults import Encoding
from simulator.profiles import PROFILES

__all__ = ["PROTOCOLS", "DeviceRecord", "Fleet", "Protocol", "parse_protocols"]

Protocol = Literal["mqtt", "http", "senml-mqtt", "senml-http"]
PROTOCOLS: tuple[Protocol, ...] = ("mqtt", "http", "senml-mqtt", "senml-http")
_ALIASES: dict[str, tuple[Protocol, ...]] = {"senml": ("senml-mqtt", "senml-http")}
_VERSION = 1


def parse_protocols(text: str) -> tuple[Protocol, ...]:
    """Parse ``mqtt,http,senml`` (``senml`` = SenML over both) into protocol names."""
    out: list[Protocol] = []
    for word in (w.strip() for w in text.split(",") if w.strip()):
        expanded = _ALIASES.get(word) or next(((p,) for p in PROTOCOLS if p == word), None)
        if expanded is None:
            known = ", ".join([*PROTOCOLS, *_ALIASES])
            raise ConfigError(f"unknown protocol {word!r}; known: {known}")
        out += [p for p in expanded if p not in out]
    if not out:
        raise ConfigError("name at least one protocol")
    return tuple(out)


@dataclass
class DeviceRecord:
    """One virtual device as the fleet file keeps it."""

    device_id: str
    profile: str
    protocol: Protocol
    token: str | None = None
    seq: int = 0
    last_ts_ms: int = 0

    @property
    def transport(self) -> Literal["mqtt", "http"]:
        """How the device sends."""
        return "mqtt" if self.protocol.endswith("mqtt") else "http"

    @property
    def encoding(self) -> Encoding:
        """What the device sends."""
        return "senml" if self.protocol.startswith("senml") else "json"


@dataclass
class Fleet:
    """The devices of a simulator run, loaded from and saved to ``path`` (if given)."""

    devices: list[DeviceRecord]
    path: Path | None = None

    @classmethod
    def load(cls, path: Path | None) -> Fleet:
        """Read the fleet file, or start an empty fleet when there is none."""
        if path is None or not path.exists():
            return cls([], path)
        try:
            doc = json.loads(path.read_text())
            if doc.get("version") != _VERSION:
                raise ConfigError(f"{path}: unknown fleet file version {doc.get('version')!r}")
            devices = [DeviceRecord(**item) for item in doc["devices"]]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{path}: not a fleet file: {exc}") from exc
        for device in devices:
            if device.profile not in PROFILES or device.protocol not in PROTOCOLS:
                raise ConfigError(f"{path}: device {device.device_id}: unknown profile/protocol")
        return cls(devices, path)

    def ensure(
        self, count: int, prefix: str, profiles: Sequence[str], protocols: Sequence[Protocol]
    ) -> list[DeviceRecord]:
        """Return the first ``count`` devices, adding new ones (profiles and protocols in turn)."""
        taken = {d.device_id for d in self.devices}
        index = len(self.devices)
        while len(self.devices) < count:
            device_id = f"{prefix}-{index:05d}"
            index += 1
            if device_id in taken:
                continue
            n = len(self.devices)
            self.devices.append(
                DeviceRecord(
                    device_id,
                    profiles[n % len(profiles)],
                    protocols[n % len(protocols)],
                )
            )
        return self.devices[:count]

    def save(self) -> None:
        """Write the fleet file atomically (tokens inside: it is created private)."""
        if self.path is None:
            return
        doc = {"version": _VERSION, "devices": [asdict(d) for d in self.devices]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent=1)
        tmp.replace(self.path)

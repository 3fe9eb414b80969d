"""Helpers for the device agent's tests: config files, a collecting subscriber, waiting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_client import Agent, load_config
from tests.support.mqtt import TestClient


def write_config(
    directory: Path,
    *,
    device_id: str,
    mqtt_url: str = "",
    http_url: str = "",
    transport: str = "mqtt",
    sensor_interval_s: float = 0.05,
    batch_interval_s: float = 0.2,
    max_readings: int = 10,
    spool: str = "",
    extra: str = "",
    receipts: str = "off",
    receipt_timeout_s: float = 30.0,
) -> Path:
    """Write a small TOML config with one synthetic sensor and return its path.

    ``receipts`` is off by default: these tests have no platform, only a collector (see
    :class:`Platform` for one that answers with commit receipts).
    """
    lines = [f'device_id = "{device_id}"', f'transport = "{transport}"', "log_interval_s = 5"]
    if mqtt_url:
        lines += [
            "[mqtt]",
            f'url = "{mqtt_url}"',
            "keepalive_s = 5",
            f'receipts = "{receipts}"',
            f"receipt_timeout_s = {receipt_timeout_s}",
        ]
    if http_url:
        lines += ["[http]", f'url = "{http_url}"', 'token = "secret-token"', "timeout_s = 5"]
    lines += [
        "[batch]",
        f"max_readings = {max_readings}",
        f"interval_s = {batch_interval_s}",
        "[reconnect]",
        "initial_s = 0.2",
        "max_s = 1.0",
        "[spool]",
        'path = "spool.db"',
        spool,
        "[[sensors]]",
        'type = "synthetic"',
        'name = "wave"',
        f"interval_s = {sensor_interval_s}",
        "[[sensors]]",
        'type = "synthetic"',
        'name = "temperature"',
        f"interval_s = {sensor_interval_s}",
        "offset = 20.0",
        extra,
    ]
    path = directory / "device.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until true or fail the test."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


class Collector:
    """Subscribes to ``telemetry/{device_id}`` and keeps every reading-set received."""

    def __init__(self, mqtt_url: str, device_id: str, *, persistent: bool = False) -> None:
        self.client = TestClient(
            mqtt_url,
            f"collector-{device_id}",
            clean_start=not persistent,
            session_expiry_s=300 if persistent else 0,
        )
        self.topic = f"telemetry/{device_id}"
        self.items: list[dict[str, Any]] = []
        self.messages = 0
        self._lock = threading.Lock()
        self.client.client.on_message = self._on_message

    def _on_message(self, _c: object, _u: object, msg: Any) -> None:
        doc = json.loads(msg.payload)
        with self._lock:
            self.messages += 1
            self.items.extend(doc if isinstance(doc, list) else [doc])

    def seqs(self) -> list[int]:
        """Seqs in arrival order (duplicates kept)."""
        with self._lock:
            return [int(item["seq"]) for item in self.items]

    def __enter__(self) -> Self:
        self.client.connect()
        self.client.subscribe(self.topic, qos=1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()


class Platform(Collector):
    """A collector that answers like the ingest: a commit receipt for each message asking one.

    ``refuse`` names seqs to refuse as ``schema``; while ``answering`` is clear it keeps
    silent (as a platform that has not read the message yet).
    """

    def __init__(self, mqtt_url: str, device_id: str, *, refuse: frozenset[int] = frozenset()):
        super().__init__(mqtt_url, device_id)
        self.refuse = refuse
        self.answering = threading.Event()
        self.answering.set()
        self.receipts = 0

    def _on_message(self, client: object, userdata: object, msg: Any) -> None:
        super()._on_message(client, userdata, msg)
        response = getattr(msg.properties, "ResponseTopic", None)
        if response is None or not self.answering.is_set():
            return
        doc = json.loads(msg.payload)
        items = doc if isinstance(doc, list) else [doc]
        rejected = [
            {"index": i, "reason": "schema", "detail": "refused by the test"}
            for i, item in enumerate(items)
            if int(item["seq"]) in self.refuse
        ]
        body = {"accepted": len(items) - len(rejected), "duplicates": 0, "rejected": rejected}
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = msg.properties.CorrelationData
        self.client.client.publish(response, json.dumps(body).encode(), 1, properties=props)
        with self._lock:
            self.receipts += 1


def first_occurrences(seqs: list[int]) -> list[int]:
    """Seqs in the order they first arrived: what a deduplicating server stores."""
    seen: set[int] = set()
    out = []
    for seq in seqs:
        if seq not in seen:
            seen.add(seq)
            out.append(seq)
    return out


@contextmanager
def running_agent(config_path: Path, env: dict[str, str] | None = None) -> Iterator[Agent]:
    """Run the agent in a thread; stop it and re-raise its failure on exit."""
    agent = Agent(load_config(config_path, env or {}))
    errors: list[BaseException] = []

    def target() -> None:
        try:
            agent.run()
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            errors.append(exc)

    thread = threading.Thread(target=target, name="agent-under-test")
    thread.start()
    try:
        yield agent
    finally:
        agent.stop()
        thread.join(30)
        assert not thread.is_alive(), "agent did not stop"
    if errors:
        raise errors[0]

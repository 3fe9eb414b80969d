"""Run a fleet: register its devices, open the drivers, run every device, drain.

Shared by ``run`` (no verification) and ``load`` (verification and report after).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from core.settings import MqttProtocol
from simulator.accounting import Ledger
from simulator.api_client import QueryApi
from simulator.delivery import Courier
from simulator.device import DeviceSettings, VirtualDevice
from simulator.driver_http import HttpDriver
from simulator.driver_mqtt import MqttDriver, ReceiptMode
from simulator.errors import ConfigError
from simulator.faults import FaultConfig
from simulator.fleet import DeviceRecord, Fleet, Protocol
from simulator.latency import LatencyProbe
from simulator.profiles import PROFILES, profile_for
from simulator.progress import Progress

__all__ = ["Endpoints", "RunConfig", "RunResult", "register", "run_fleet"]

_REGISTER_CONCURRENCY = 16
_MQTT_CONNECT_S = 15.0


@dataclass(frozen=True)
class Endpoints:
    """Where the platform is, and the admin key of its API."""

    api_url: str
    api_key: str
    ingest_url: str
    mqtt_url: str | None


@dataclass(frozen=True)
class RunConfig:
    """What to simulate: fleet size, rate, protocols, faults."""

    devices: int = 100
    rate: float | None = None
    per_message: int = 1
    duration_s: float | None = 60.0
    jitter: float = 0.1
    protocols: tuple[Protocol, ...] = ("mqtt", "http")
    profiles: tuple[str, ...] = tuple(PROFILES)
    prefix: str = "sim"
    seed: int | None = None
    anomaly_rate: float = 0.001
    drain_s: float = 30.0
    devices_per_connection: int = 200
    mqtt_protocol: MqttProtocol = "5"
    receipts: ReceiptMode = "auto"
    http_connections: int = 64
    faults: FaultConfig = field(default_factory=FaultConfig)

    @property
    def target_rate(self) -> float:
        """Reading-sets per second across the fleet."""
        return self.rate if self.rate is not None else float(self.devices)

    def problems(self) -> list[str]:
        """Name every setting out of range."""
        out = list(self.faults.problems())
        if self.devices < 1:
            out.append("devices must be at least 1")
        if self.target_rate <= 0:
            out.append("rate must be positive")
        if self.per_message < 1:
            out.append("per-message must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            out.append("duration must be positive")
        if not 0 <= self.jitter < 1:
            out.append("jitter must be in [0, 1)")
        for name in self.profiles:
            try:
                profile_for(name)
            except KeyError as exc:
                out.append(str(exc.args[0]))
        return out


@dataclass(frozen=True)
class RunResult:
    """How a run went, beside the ledger's counters: time from start to the last send."""

    elapsed_s: float
    drained: bool


async def register(api: QueryApi, devices: Sequence[DeviceRecord]) -> int:
    """Register the devices that have no token yet; return how many were."""
    todo = [d for d in devices if d.token is None]
    gate = asyncio.Semaphore(_REGISTER_CONCURRENCY)

    async def one(device: DeviceRecord) -> None:
        async with gate:
            device.token = await api.register(
                device.device_id,
                f"simulated {device.profile}",
                {"simulator": "true", "profile": device.profile, "protocol": device.protocol},
            )

    try:
        async with asyncio.TaskGroup() as group:
            for device in todo:
                group.create_task(one(device))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return len(todo)


async def run_fleet(
    config: RunConfig,
    endpoints: Endpoints,
    fleet: Fleet,
    ledger: Ledger,
    *,
    api: QueryApi,
    probe: LatencyProbe | None = None,
    status: TextIO | None = None,
) -> RunResult:
    """Register and run the fleet for ``config.duration_s`` (None: until cancelled)."""
    records = fleet.ensure(config.devices, config.prefix, config.profiles, config.protocols)
    await register(api, records)
    fleet.save()
    mqtt_devices = sum(1 for r in records if r.transport == "mqtt")
    if mqtt_devices and endpoints.mqtt_url is None:
        raise ConfigError("the fleet has MQTT devices: give --mqtt-url or MQTT_URL")
    rng = random.Random(config.seed)  # noqa: S311  (simulation, not crypto)
    settings = DeviceSettings(
        interval_s=config.devices / config.target_rate,
        per_message=config.per_message,
        jitter=config.jitter,
        anomaly_rate=config.anomaly_rate,
        fleet_size=config.devices,
        faults=config.faults,
    )
    connections = math.ceil(mqtt_devices / config.devices_per_connection)
    async with contextlib.AsyncExitStack() as stack:
        mqtt = None
        if mqtt_devices and endpoints.mqtt_url is not None:
            mqtt = await stack.enter_async_context(
                MqttDriver(
                    endpoints.mqtt_url,
                    connections=connections,
                    protocol=config.mqtt_protocol,
                    receipts=config.receipts,
                )
            )
            await mqtt.wait_connected(_MQTT_CONNECT_S)
        http = await stack.enter_async_context(
            HttpDriver(endpoints.ingest_url, max_connections=config.http_connections)
        )
        courier = Courier(ledger, mqtt, http)
        devices = []
        for i, record in enumerate(records):
            profile = profile_for(record.profile)
            ledger.add_device(record.device_id, len(profile.metrics), profile.types)
            device_rng = random.Random(rng.getrandbits(64))  # noqa: S311
            devices.append(VirtualDevice(i, record, settings, courier, device_rng, probe=probe))
        await stack.enter_async_context(Progress(ledger, status, config.duration_s))
        started = time.monotonic()
        until = started + config.duration_s if config.duration_s is not None else math.inf
        tasks = [
            asyncio.create_task(d.run(until), name=f"device-{i}") for i, d in enumerate(devices)
        ]
        try:
            done, late = await asyncio.wait(
                tasks, timeout=None if math.isinf(until) else until - started + config.drain_s
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            fleet.save()
        elapsed_s = time.monotonic() - started
        for task in done:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure
    return RunResult(elapsed_s=elapsed_s, drained=not late)

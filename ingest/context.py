"""The objects one ingest worker shares between its HTTP handlers, MQTT intake and jobs."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ingest.intake import IntakeRules
from ingest.mqtt import MqttConsumer
from ingest.pipeline import Pipeline
from ingest.ratelimit import TokenBuckets
from ingest.registry import DeviceAuthenticator
from ingest.settings import HttpSettings
from ingest.wire import Limits
from ingest.writer import BatchWriter

__all__ = ["INTAKE", "Intake"]


@dataclass
class Intake:
    """Everything a worker's intake needs; built once per process."""

    writer: BatchWriter
    pipeline: Pipeline
    devices: DeviceAuthenticator
    rate_limits: TokenBuckets
    limits: Limits
    rules: IntakeRules
    http: HttpSettings
    auto_register: bool
    max_mqtt_payload_bytes: int
    mqtt: MqttConsumer | None = None


INTAKE = web.AppKey("intake", Intake)

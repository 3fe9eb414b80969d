"""How each ingest worker takes part in MQTT intake."""

from __future__ import annotations

import pytest

from core.settings import DatabaseSettings
from ingest.settings import (
    HttpSettings,
    IntakeSettings,
    MqttSettings,
    ServeSettings,
    StorageSettings,
)
from ingest.worker import WorkerConfig


def _config(worker_index: int, url: str, group: str = "") -> WorkerConfig:
    return WorkerConfig(
        db=DatabaseSettings(database_url="postgresql://127.0.0.1/unused"),
        storage=StorageSettings(),
        http=HttpSettings(),
        mqtt=MqttSettings(mqtt_url=url, mqtt_share_group=group),
        intake=IntakeSettings(),
        serve=ServeSettings(),
        worker_index=worker_index,
    )


@pytest.mark.parametrize("worker", [0, 1, 3])
def test_every_worker_joins_a_shared_subscription(worker: int) -> None:
    config = _config(worker, "mqtt://127.0.0.1:1883", group="ingest")
    assert config.mqtt_role == "shared"
    assert config.client_id.endswith(f"-{worker}")


def test_by_default_worker_zero_receives_and_the_others_are_handed_messages() -> None:
    url = "mqtt://127.0.0.1:1883"
    assert _config(0, url).mqtt_role == "receiver"
    assert _config(1, url).mqtt_role == "helper"
    assert _config(2, url).mqtt_role == "helper"


@pytest.mark.parametrize("url", ["none", "off", "", " NONE "])
def test_mqtt_url_none_turns_mqtt_off(url: str) -> None:
    assert _config(0, url).mqtt_role == "off"
    assert _config(1, url).mqtt_role == "off"

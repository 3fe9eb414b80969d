"""Which ingest workers consume MQTT."""

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


def _config(worker_index: int, url: str, group: str = "ingest") -> WorkerConfig:
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
def test_every_worker_shares_a_shared_subscription(worker: int) -> None:
    config = _config(worker, "mqtt://127.0.0.1:1883")
    assert config.mqtt_enabled
    assert config.client_id.endswith(f"-{worker}")


def test_a_plain_subscription_has_one_consumer_worker_zero() -> None:
    url = "mqtt://127.0.0.1:1883"
    assert _config(0, url, group="").mqtt_enabled
    assert not _config(1, url, group="").mqtt_enabled
    assert not _config(2, url, group="").mqtt_enabled


@pytest.mark.parametrize("url", ["none", "off", "", " NONE "])
def test_mqtt_url_none_turns_mqtt_off(url: str) -> None:
    assert not _config(0, url).mqtt_enabled

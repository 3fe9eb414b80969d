"""Settings of the ingest service, in small frozen groups (the database's are in core).

A field ``retention_days`` reads ``RETENTION_DAYS`` and has the flag ``--retention-days``
(:func:`core.settings.add_settings_arguments`); a flag wins over the environment, the
environment over the default.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.retention import Retention
from core.settings import MqttProtocol

__all__ = [
    "AlertSettings",
    "HttpSettings",
    "IntakeSettings",
    "MqttSettings",
    "ServeSettings",
    "StorageMode",
    "StorageSettings",
]

StorageMode = Literal["auto", "timescale", "plain"]


class StorageSettings(BaseSettings):
    """Storage layout: which path, how long data is kept, how it is partitioned."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    storage_mode: StorageMode = Field(
        "auto", description="timescale, plain, or auto (timescale where installed)"
    )
    retention_days: int = Field(
        365, ge=1, description="old name of RETENTION_RAW_DAYS, used when that is not set"
    )
    retention_raw_days: int | None = Field(
        None, ge=1, description="raw readings older than this are dropped (default RETENTION_DAYS)"
    )
    retention_1m_days: int | None = Field(
        None, ge=1, description="1-minute rollup kept this long (default: as raw readings)"
    )
    retention_1h_days: int | None = Field(
        None, ge=1, description="1-hour rollup kept this long (default: as the 1-minute one)"
    )
    retention_1d_days: int | None = Field(
        None, ge=1, description="1-day rollup kept this long (default: as the 1-hour one)"
    )
    chunk_interval_hours: int = Field(
        24, ge=1, description="TimescaleDB chunk interval (see docs/storage.md)"
    )
    compress_after_days: int = Field(7, ge=1, description="TimescaleDB compresses older chunks")
    partitions_ahead_days: int = Field(
        7, ge=1, description="plain PostgreSQL: daily partitions created ahead"
    )
    dead_letter_retention_days: int = Field(30, ge=1, description="dead letters kept this long")
    rollup_refresh_interval_s: float = Field(
        10.0, gt=0, description="plain PostgreSQL: how often rollups are refreshed"
    )

    @model_validator(mode="after")
    def _tiers_in_order(self) -> StorageSettings:
        self.tiers  # noqa: B018  (raises ValueError when out of order)
        return self

    @property
    def tiers(self) -> Retention:
        """Retention per tier: an unset tier is kept as long as the finer one before it."""
        raw = self.retention_raw_days or self.retention_days
        minute = self.retention_1m_days or raw
        hour = self.retention_1h_days or minute
        return Retention(raw, minute, hour, self.retention_1d_days or hour)

    @property
    def retention(self) -> timedelta:
        """Retention of raw readings as a duration."""
        return timedelta(days=self.tiers.raw_days)


class HttpSettings(BaseSettings):
    """HTTP intake: where it listens and what it accepts."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    ingest_http_host: str = Field("127.0.0.1", description="address to listen on")
    ingest_http_port: int = Field(8001, ge=0, le=65535, description="port to listen on")
    http_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="largest request body, after gzip decoding (413 above)"
    )
    http_rate_per_device: float = Field(
        20.0, gt=0, description="requests per second a device may make (429 above)"
    )
    http_burst_per_device: int = Field(40, ge=1, description="requests a device may burst")
    http_tls_cert: str | None = Field(None, description="PEM certificate: serve HTTPS")
    http_tls_key: str | None = Field(None, description="PEM private key of the certificate")
    http_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="longest a client may take to send its headers or body (408 or cut after)",
    )


class MqttSettings(BaseSettings):
    """MQTT intake: the broker, the shared subscription and the receive window."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    mqtt_url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="broker URL, mqtt://user:pass@host:port or mqtts:// for TLS; 'none' disables",
    )
    mqtt_share_group: str = Field(
        "",
        description="empty: one plain subscription per host, which survives a broker restart,"
        " its messages shared out among the workers; a name: every worker of every host"
        " joins that shared subscription (scales across hosts; see docs/reliability.md)",
    )
    mqtt_protocol: MqttProtocol = Field(
        "5",
        description="MQTT version, 5 or 3.1.1 (brokers without MQTT 5, such as amqtt: no"
        " shared subscription and no receipts)",
    )
    mqtt_client_id: str = Field(
        "",
        description="client id prefix (default ingest-<hostname>); worker index appended."
        " Keep it across restarts: the broker queues for the session of that id",
    )
    mqtt_receive_window: int = Field(
        2000, ge=1, le=65535, description="unacknowledged messages the broker may send ahead"
    )
    mqtt_session_expiry_s: int = Field(
        3600, ge=0, description="how long the broker keeps the session while disconnected"
    )
    mqtt_ca_file: str | None = Field(None, description="CA bundle to verify the broker (mqtts)")
    mqtt_max_payload_bytes: int = Field(
        262_144, ge=1024, description="larger messages are dead-lettered as too_large"
    )


class IntakeSettings(BaseSettings):
    """Validation and batching of what arrives."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    max_future_skew_s: float = Field(
        300.0, ge=0, description="readings further ahead of the server clock are rejected"
    )
    max_items_per_message: int = Field(10_000, ge=1, description="reading-sets per message")
    auto_register: bool = Field(
        default=False, description="register unknown MQTT devices instead of dead-lettering them"
    )
    max_batch_rows: int = Field(5_000, ge=1, description="rows per database batch")
    flush_interval_s: float = Field(
        0.05, gt=0, description="longest a reading waits for its batch to fill"
    )
    max_queue_rows: int = Field(
        200_000, ge=1, description="rows queued or being written before intake pushes back"
    )
    max_concurrent_flushes: int = Field(2, ge=1, description="batches written at once")


class ServeSettings(BaseSettings):
    """Process-level settings of ``serve``."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    log_format: Literal["text", "json"] = Field("text", description="log line format")
    run_jobs: bool = Field(
        default=True,
        description="run the storage jobs (partitions, retention, rollups) in worker 0",
    )


class AlertSettings(BaseSettings):
    """Alerts: how often rules are evaluated, where notifications link to, how they retry."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    run_alerts: bool = Field(
        default=True,
        description="evaluate alert rules and deliver notifications in worker 0; one process"
        " across all hosts does it at a time (a PostgreSQL advisory lock)",
    )
    alert_eval_interval_s: float = Field(
        15.0, gt=0, description="how often the alert rules are evaluated"
    )
    alert_api_url: str = Field(
        "http://127.0.0.1:8000",
        description="base URL of the query API, for the links in notifications",
    )
    alert_default_interval_s: int = Field(
        60,
        ge=1,
        description="offline rules: expected reporting interval of devices that declare none"
        " (keep it equal to the API's API_DEFAULT_INTERVAL_S)",
    )
    alert_delivery_timeout_s: float = Field(
        10.0, gt=0, description="longest a webhook may take to answer a delivery"
    )
    alert_retry_min_s: float = Field(
        1.0, gt=0, description="first delay before a failed delivery is tried again"
    )
    alert_retry_max_s: float = Field(
        300.0, gt=0, description="longest delay between attempts (doubling, jittered)"
    )
    alert_max_attempts: int = Field(
        12, ge=1, description="attempts of a notification before it is dead"
    )
    alert_retention_days: int = Field(
        90, ge=1, description="alert events and finished notifications are kept this long"
    )

"""Settings of the query API: environment variables, each with a command-line flag.

The database settings are the ingest service's (``DATABASE_URL``, ``DB_POOL_MIN``...);
the flags come from :func:`ingest.settings.add_settings_arguments`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiSettings", "BrokerAccountSettings", "BrokerSettings"]


class ApiSettings(BaseSettings):
    """Query API: where it listens, the bootstrap key, limits."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    api_host: str = Field("127.0.0.1", description="address to listen on")
    api_port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    api_admin_key: SecretStr | None = Field(
        None, description="a bootstrap key with admin scope (never logged)"
    )
    api_rate_per_key: float = Field(
        50.0, gt=0, description="requests per second an API key may make (429 above)"
    )
    api_burst_per_key: int = Field(100, ge=1, description="requests an API key may burst")
    api_tls_cert: str | None = Field(None, description="PEM certificate: serve HTTPS")
    api_tls_key: str | None = Field(None, description="PEM private key of the certificate")
    api_read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="longest a client may take to send its headers or body (408 or cut after)",
    )
    api_max_points: int = Field(
        10_000, ge=1, le=1_000_000, description="points per series in one response (400 above)"
    )
    api_offline_after_intervals: float = Field(
        3.0, gt=0, description="a device is offline after this many expected intervals unheard"
    )
    api_default_interval_s: int = Field(
        60, ge=1, description="expected reporting interval of devices that declare none"
    )
    api_latest_window_s: int = Field(
        86_400,
        ge=1,
        description="fleet-wide latest values look this far back from each device's last reading",
    )
    api_db_wait_s: float = Field(
        5.0, gt=0, description="longest a request waits for a database connection (503 after)"
    )
    api_statement_timeout_s: float = Field(
        30.0, gt=0, description="longest a query may run (exports are exempt)"
    )


class BrokerSettings(BaseSettings):
    """MQTT broker provisioning: device credentials made effective in Mosquitto."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    api_broker_admin_url: SecretStr | None = Field(
        None,
        description="mqtt://admin:password@host:1883 of Mosquitto's dynamic security admin;"
        " unset: devices get no broker credentials (never logged)",
    )
    api_broker_timeout_s: float = Field(
        5.0, gt=0, description="longest the broker may take to confirm a change (503 after)"
    )


class BrokerAccountSettings(BaseSettings):
    """Broker accounts of the services, created by ``python -m api broker-setup``."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    mqtt_ingest_username: str = Field("ingest", description="the ingest's broker username")
    mqtt_ingest_password: SecretStr = Field(
        description="the ingest's broker password (required, never logged)"
    )
    mqtt_share_group: str = Field(
        "", description="the ingest's MQTT_SHARE_GROUP (empty, the default: a plain subscription)"
    )
    mqtt_simulator_username: str = Field("simulator", description="the simulator's broker username")
    mqtt_simulator_password: SecretStr | None = Field(
        None, description="the simulator's broker password; unset: no simulator account"
    )

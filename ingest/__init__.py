"""Ingestion server: MQTT and HTTP intake, validation, batching and exactly-once storage."""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Prometheus instruments of the ingest service.

With several worker processes the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` and every
worker's ``/metrics`` answers for all of them (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import REGISTRY

__all__ = ["METRICS", "Metrics", "render"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


@dataclass(frozen=True)
class Metrics:
    """Every instrument the ingest service records."""

    received: Counter
    accepted: Counter
    duplicates: Counter
    rejected: Counter
    overloaded: Counter
    flush_failures: Counter
    batch_rows: Histogram
    flush_seconds: Histogram
    commit_lag: Histogram
    mqtt_acks: Counter
    mqtt_stale_acks: Counter
    mqtt_connects: Counter
    receipts_sent: Counter
    receipts_refused: Counter
    db_retries: Counter
    batches_deduplicated: Counter
    latest_rows: Counter
    attribute_reports: Counter
    queue_rows: Gauge
    mqtt_connected: Gauge
    last_commit: Gauge


METRICS = Metrics(
    received=Counter("ingest_messages_received", "Messages and requests received", ["source"]),
    accepted=Counter("ingest_readings_accepted", "Readings stored"),
    duplicates=Counter("ingest_readings_duplicates", "Readings already stored, not stored again"),
    rejected=Counter(
        "ingest_items_rejected", "Items and messages rejected, by reason", ["source", "reason"]
    ),
    overloaded=Counter("ingest_overloaded", "Submissions refused because the queue was full"),
    flush_failures=Counter("ingest_flush_failures", "Batches whose write failed"),
    batch_rows=Histogram(
        "ingest_batch_rows",
        "Rows per written batch",
        buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000),
    ),
    flush_seconds=Histogram(
        "ingest_flush_seconds", "Time to write and commit a batch", buckets=_LATENCY_BUCKETS
    ),
    commit_lag=Histogram(
        "ingest_commit_lag_seconds",
        "Commit time minus reading time (newest reading of each message)",
        buckets=_LATENCY_BUCKETS,
    ),
    mqtt_acks=Counter("ingest_mqtt_acks", "MQTT messages acknowledged after commit"),
    mqtt_stale_acks=Counter(
        "ingest_mqtt_stale_acks",
        "MQTT acknowledgements not sent: the message came on an earlier connection (the broker"
        " redelivers it)",
    ),
    mqtt_connects=Counter("ingest_mqtt_connects", "Connections made to the MQTT broker"),
    receipts_sent=Counter("ingest_receipts_sent", "Commit receipts published (MQTT 5)"),
    receipts_refused=Counter(
        "ingest_receipts_refused",
        "Receipts not sent: the response topic was not under receipts/{the device's id}",
    ),
    db_retries=Counter("ingest_db_retries", "Database writes retried after a transient failure"),
    batches_deduplicated=Counter(
        "ingest_batches_deduplicated",
        "Batches that held a stored reading and went through INSERT ... ON CONFLICT",
    ),
    latest_rows=Counter("ingest_latest_rows", "Rows of latest_readings upserted"),
    attribute_reports=Counter(
        "ingest_attribute_reports",
        "Devices' reports about themselves (attributes), by outcome: stored, rejected (dead"
        " letter), unknown_device (a registered device's report is gone with it), cleared",
        ["outcome"],
    ),
    queue_rows=Gauge(
        "ingest_queue_rows", "Rows queued or being written", multiprocess_mode="livesum"
    ),
    mqtt_connected=Gauge(
        "ingest_mqtt_connected", "1 while connected to the broker", multiprocess_mode="livesum"
    ),
    last_commit=Gauge(
        "ingest_last_commit_timestamp_seconds",
        "Unix time of the newest committed batch of readings (any worker)",
        multiprocess_mode="max",
    ),
)


def render() -> bytes:
    """Render the exposition text for ``/metrics``, across workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)

"""Ingestion health: intake and reject rates, commit lag, queue depth, flush latency.

The Prometheus panels read the instruments of ``ingest.metrics`` as every ingest worker
exports them on ``/metrics`` (counters with ``_total``, histograms with ``_bucket``);
sums run across workers and replicas. The SQL panels answer from the database itself.
"""

from __future__ import annotations

from dashboards import queries
from dashboards.common import bars, lines, stat_options, table_options
from dashboards.model import Dashboard, Panel, PromQL, Sql

__all__ = ["INGESTION_HEALTH"]

_LINES, _LINE_STYLE = lines()
_BARS, _BAR_STYLE = bars()
_RATE = "[$__rate_interval]"


def _quantiles(histogram: str) -> tuple[PromQL, ...]:
    return tuple(
        PromQL(
            f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{_RATE})))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    )


_INTAKE = Panel(
    title="Intake",
    type="timeseries",
    description=(
        "Messages and requests received per second by source (mqtt, http), readings stored "
        "and duplicates skipped per second."
    ),
    targets=(
        PromQL(
            f"sum by (source) (rate(ingest_messages_received_total{_RATE}))",
            "received {{source}}",
        ),
        PromQL(f"sum(rate(ingest_readings_accepted_total{_RATE}))", "readings stored"),
        PromQL(f"sum(rate(ingest_readings_duplicates_total{_RATE}))", "duplicates"),
    ),
    width=12,
    height=8,
    unit="ops",
    options=_LINES,
    custom=_LINE_STYLE,
)

_REJECTS = Panel(
    title="Rejects by reason",
    type="timeseries",
    description="Items and messages rejected per second, by reason code and source.",
    targets=(
        PromQL(
            f"sum by (reason, source) (rate(ingest_items_rejected_total{_RATE}))",
            "{{reason}} ({{source}})",
        ),
    ),
    width=12,
    height=8,
    unit="ops",
    options=_BARS,
    custom=_BAR_STYLE,
)

_COMMIT_LAG = Panel(
    title="Commit lag",
    type="timeseries",
    description=(
        "Commit time minus reading time of the newest reading of each message: how late "
        "data reaches the database (device clocks and spooled backlogs included)."
    ),
    targets=_quantiles("ingest_commit_lag_seconds"),
    width=8,
    height=8,
    unit="s",
    options=_LINES,
    custom=_LINE_STYLE,
)

_QUEUE = Panel(
    title="Queue depth",
    type="timeseries",
    description=(
        "Rows queued or being written, summed over workers. Near its bound the intake "
        "pushes back (HTTP 429/503, MQTT stops acknowledging); refusals are shown in red."
    ),
    targets=(
        PromQL("sum(ingest_queue_rows)", "rows queued"),
        PromQL(f"sum(rate(ingest_overloaded_total{_RATE}))", "refused per second"),
    ),
    width=8,
    height=8,
    unit="short",
    options=_LINES,
    custom=_LINE_STYLE,
    overrides=(
        {
            "matcher": {"id": "byName", "options": "refused per second"},
            "properties": [
                {"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}},
                {"id": "custom.axisPlacement", "value": "right"},
            ],
        },
    ),
)

_FLUSH = Panel(
    title="Flush latency",
    type="timeseries",
    description="Time to write and commit a batch (quantiles over all workers).",
    targets=_quantiles("ingest_flush_seconds"),
    width=8,
    height=8,
    unit="s",
    options=_LINES,
    custom=_LINE_STYLE,
)

_BATCH = Panel(
    title="Batch size and failures",
    type="timeseries",
    description=(
        "Median rows per written batch, failed batch writes per second (retried, then "
        "pushed back) and MQTT acknowledgements sent after commit per second."
    ),
    targets=(
        PromQL(
            f"histogram_quantile(0.5, sum by (le) (rate(ingest_batch_rows_bucket{_RATE})))",
            "rows per batch (p50)",
        ),
        PromQL(f"sum(rate(ingest_flush_failures_total{_RATE}))", "failed flushes/s"),
        PromQL(f"sum(rate(ingest_mqtt_acks_total{_RATE}))", "MQTT acks/s"),
    ),
    width=12,
    height=8,
    unit="short",
    options=_LINES,
    custom=_LINE_STYLE,
)

_CONNECTED = Panel(
    title="Workers connected to the broker",
    type="stat",
    description="Ingest workers with a live MQTT connection, summed over replicas.",
    targets=(PromQL("sum(ingest_mqtt_connected)", "connected"),),
    width=6,
    height=8,
    options=stat_options() | {"graphMode": "area"},
    defaults={
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
        }
    },
)

_FRESHNESS = Panel(
    title="Since last reading",
    type="stat",
    description=(
        "Seconds since any device was last heard (from the database): a fleet-wide stall "
        "shows here first."
    ),
    targets=(Sql(queries.FRESHNESS, "table", ("since last reading",)),),
    width=6,
    height=8,
    unit="s",
    options=stat_options(),
)

_RECENT = Panel(
    title="Recent rejects",
    type="table",
    description="The newest dead letters in the time range (at most 200), from the database.",
    targets=(
        Sql(
            queries.RECENT_REJECTS,
            "table",
            ("received_at", "source", "device_id", "reason", "detail"),
        ),
    ),
    width=24,
    height=9,
    options=table_options(),
)

INGESTION_HEALTH = Dashboard(
    uid="telemetry-ingestion-health",
    title="Ingestion health",
    description="Is the intake keeping up: rates, rejects, lag, queue depth and latency.",
    rows=(
        (_INTAKE, _REJECTS),
        (_COMMIT_LAG, _QUEUE, _FLUSH),
        (_BATCH, _CONNECTED, _FRESHNESS),
        (_RECENT,),
    ),
    time_from="now-1h",
    refresh="10s",
)

"""Ingestion health: intake and reject rates, commit lag, queue depth, flush latency.

The Prometheus panels read the instruments of ``ingest.metrics`` as every ingest worker
exports them on ``/metrics`` (counters with ``_total``, histograms with ``_bucket``);
sums run across workers and replicas. The SQL panels answer from the database itself.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, prometheus
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
)
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

from dashboards import queries
from dashboards.common import (
    bar_chart,
    fixed_color,
    line_chart,
    stat_panel,
    table_panel,
    telemetry_dashboard,
)
from dashboards.datasources import PG, PROM
from dashboards.sql import Sql, SqlFormat

__all__ = ["INGESTION_HEALTH"]

_RATE = "[$__rate_interval]"


def _promql(ref_id: str, expr: str, legend: str) -> prometheus.Dataquery:
    """Make a range query in code mode, its series named by ``legend``."""
    return (
        prometheus.Dataquery()
        .ref_id(ref_id)
        .datasource(PROM)
        .editor_mode(QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
        .range()
    )


def _quantiles(histogram: str) -> list[Builder[Dataquery]]:
    """Query the median, 95th and 99th percentile of a histogram over all workers."""
    return [
        _promql(
            ref_id,
            f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{_RATE})))",
            f"p{round(q * 100)}",
        )
        for ref_id, q in zip("ABC", (0.5, 0.95, 0.99), strict=True)
    ]


_INTAKE = (
    line_chart()
    .id(1)
    .title("Intake")
    .description(
        "Messages and requests received per second by source (mqtt, http), readings stored "
        "and duplicates skipped per second."
    )
    .datasource(PROM)
    .with_target(
        _promql(
            "A",
            f"sum by (source) (rate(ingest_messages_received_total{_RATE}))",
            "received {{source}}",
        )
    )
    .with_target(
        _promql("B", f"sum(rate(ingest_readings_accepted_total{_RATE}))", "readings stored")
    )
    .with_target(_promql("C", f"sum(rate(ingest_readings_duplicates_total{_RATE}))", "duplicates"))
    .span(12)
    .height(8)
    .unit(units.OpsPerSecond)
)

_REJECTS = (
    bar_chart()
    .id(2)
    .title("Rejects by reason")
    .description("Items and messages rejected per second, by reason code and source.")
    .datasource(PROM)
    .with_target(
        _promql(
            "A",
            f"sum by (reason, source) (rate(ingest_items_rejected_total{_RATE}))",
            "{{reason}} ({{source}})",
        )
    )
    .span(12)
    .height(8)
    .unit(units.OpsPerSecond)
)

_COMMIT_LAG = (
    line_chart()
    .id(3)
    .title("Commit lag")
    .description(
        "Commit time minus reading time of the newest reading of each message: how late "
        "data reaches the database (device clocks and spooled backlogs included)."
    )
    .datasource(PROM)
    .targets(_quantiles("ingest_commit_lag_seconds"))
    .span(8)
    .height(8)
    .unit(units.Seconds)
)

_QUEUE = (
    line_chart()
    .id(4)
    .title("Queue depth")
    .description(
        "Rows queued or being written, summed over workers. Near its bound the intake "
        "pushes back (HTTP 429/503, MQTT stops acknowledging); refusals are shown in red."
    )
    .datasource(PROM)
    .with_target(_promql("A", "sum(ingest_queue_rows)", "rows queued"))
    .with_target(_promql("B", f"sum(rate(ingest_overloaded_total{_RATE}))", "refused per second"))
    .span(8)
    .height(8)
    .unit(units.Short)
    .override_by_name(
        "refused per second",
        [
            fixed_color("red"),
            DynamicConfigValue("custom.axisPlacement", common.AxisPlacement.RIGHT),
        ],
    )
)

_FLUSH = (
    line_chart()
    .id(5)
    .title("Flush latency")
    .description("Time to write and commit a batch (quantiles over all workers).")
    .datasource(PROM)
    .targets(_quantiles("ingest_flush_seconds"))
    .span(8)
    .height(8)
    .unit(units.Seconds)
)

_BATCH = (
    line_chart()
    .id(6)
    .title("Batch size and failures")
    .description(
        "Median rows per written batch, failed batch writes per second (retried, then "
        "pushed back) and MQTT acknowledgements sent after commit per second."
    )
    .datasource(PROM)
    .with_target(
        _promql(
            "A",
            f"histogram_quantile(0.5, sum by (le) (rate(ingest_batch_rows_bucket{_RATE})))",
            "rows per batch (p50)",
        )
    )
    .with_target(_promql("B", f"sum(rate(ingest_flush_failures_total{_RATE}))", "failed flushes/s"))
    .with_target(_promql("C", f"sum(rate(ingest_mqtt_acks_total{_RATE}))", "MQTT acks/s"))
    .span(12)
    .height(8)
    .unit(units.Short)
)

_CONNECTED = (
    stat_panel()
    .id(7)
    .title("Workers connected to the broker")
    .description("Ingest workers with a live MQTT connection, summed over replicas.")
    .datasource(PROM)
    .with_target(_promql("A", "sum(ingest_mqtt_connected)", "connected"))
    .span(6)
    .height(8)
    .graph_mode(common.BigValueGraphMode.AREA)
    .thresholds(
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=None, color="red"), Threshold(value=1, color="green")])
    )
)

_FRESHNESS = (
    stat_panel()
    .id(8)
    .title("Since last reading")
    .description(
        "Seconds since any device was last heard (from the database): a fleet-wide stall "
        "shows here first."
    )
    .datasource(PG)
    .with_target(Sql(queries.FRESHNESS, SqlFormat.TABLE, ("since last reading",)))
    .span(6)
    .height(8)
    .unit(units.Seconds)
)

_RECENT = (
    table_panel()
    .id(9)
    .title("Recent rejects")
    .description("The newest dead letters in the time range (at most 200), from the database.")
    .datasource(PG)
    .with_target(
        Sql(
            queries.RECENT_REJECTS,
            SqlFormat.TABLE,
            ("received_at", "source", "device_id", "reason", "detail"),
        )
    )
    .span(24)
    .height(9)
)

INGESTION_HEALTH = (
    telemetry_dashboard(
        "Ingestion health",
        "telemetry-ingestion-health",
        "Is the intake keeping up: rates, rejects, lag, queue depth and latency.",
    )
    .time("now-1h", "now")
    .refresh("10s")
    .with_panel(_INTAKE)
    .with_panel(_REJECTS)
    .with_panel(_COMMIT_LAG)
    .with_panel(_QUEUE)
    .with_panel(_FLUSH)
    .with_panel(_BATCH)
    .with_panel(_CONNECTED)
    .with_panel(_FRESHNESS)
    .with_panel(_RECENT)
    .build()
)

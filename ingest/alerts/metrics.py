"""Prometheus instruments of alert evaluation and delivery, on the ingest's ``/metrics``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["ALERT_METRICS", "AlertMetrics"]


@dataclass(frozen=True)
class AlertMetrics:
    """Every instrument the alert evaluator and its deliveries record."""

    evaluations: Counter
    evaluation_seconds: Histogram
    evaluation_failures: Counter
    transitions: Counter
    deliveries: Counter
    evaluator: Gauge


ALERT_METRICS = AlertMetrics(
    evaluations=Counter("ingest_alert_evaluations", "Evaluations of every alert rule"),
    evaluation_seconds=Histogram(
        "ingest_alert_evaluation_seconds",
        "Time one evaluation of every rule took, its commit included",
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
    ),
    evaluation_failures=Counter(
        "ingest_alert_evaluation_failures", "Evaluations that failed (and run again next time)"
    ),
    transitions=Counter("ingest_alert_transitions", "Alert state transitions written"),
    deliveries=Counter(
        "ingest_alert_deliveries",
        "Webhook deliveries by result: delivered, failed (to be retried), dead",
        ["result"],
    ),
    evaluator=Gauge(
        "ingest_alert_evaluator",
        "1 while this process holds the evaluator's lock",
        multiprocess_mode="livesum",
    ),
)

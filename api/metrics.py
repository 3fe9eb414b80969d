"""Prometheus instruments of the query API, in a registry of its own."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["METRICS", "Metrics", "render"]

REGISTRY = CollectorRegistry()


@dataclass(frozen=True)
class Metrics:
    """Every instrument the query API records."""

    requests: Counter
    seconds: Histogram


METRICS = Metrics(
    requests=Counter(
        "api_requests",
        "Requests answered, by route and status",
        ["route", "status"],
        registry=REGISTRY,
    ),
    seconds=Histogram(
        "api_request_seconds",
        "Time to answer (to the start of the body for streams), by route",
        ["route"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30),
        registry=REGISTRY,
    ),
)


def render() -> bytes:
    """Render the exposition text for ``/metrics``."""
    return generate_latest(REGISTRY)

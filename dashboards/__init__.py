"""Grafana dashboards of the telemetry platform, built with grafana-foundation-sdk.

``python -m dashboards.build`` writes ``dashboards/*.json``; ``--check`` fails when the
committed JSON differs from what the source generates. See docs/dashboards.md.
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards.device import DEVICE_DETAIL
from dashboards.fleet import FLEET_OVERVIEW
from dashboards.health import INGESTION_HEALTH

__all__ = ["DASHBOARDS", "DEVICE_DETAIL", "FLEET_OVERVIEW", "INGESTION_HEALTH"]

DASHBOARDS: tuple[Dashboard, ...] = (FLEET_OVERVIEW, DEVICE_DETAIL, INGESTION_HEALTH)

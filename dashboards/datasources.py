"""The datasources of provisioning/datasources/telemetry.yaml, as SDK datasource references."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import DataSourceRef

__all__ = ["DATASOURCES", "PG", "PROM"]

PG = DataSourceRef(type_val="grafana-postgresql-datasource", uid="telemetry-pg")
PROM = DataSourceRef(type_val="prometheus", uid="telemetry-prom")

#: Every datasource a dashboard may name; the build refuses any other.
DATASOURCES = (PG, PROM)

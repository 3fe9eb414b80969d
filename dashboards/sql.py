"""A panel's PostgreSQL query: the one query type that grafana-foundation-sdk 11.4 lacks.

It takes the SDK's shape (a model that renders itself and a builder that makes it), so a
panel takes it as it takes the SDK's Prometheus queries, and an annotation as it takes the
SDK's annotation targets. Grafana's macros in the SQL are expanded by Grafana, not here (see
queries.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import AnnotationTarget

from dashboards.datasources import PG

__all__ = ["Sql", "SqlAnnotation", "SqlAnnotationTarget", "SqlFormat", "SqlQuery"]


class SqlFormat(enum.StrEnum):
    """How Grafana reads the rows: a time column first, or a plain table."""

    TIME_SERIES = "time_series"
    TABLE = "table"


@dataclass(frozen=True)
class SqlQuery(cogvariants.Dataquery):
    """Raw SQL in code mode, and the columns that the panel reads from its rows.

    The columns are not part of Grafana's JSON: tests/dashboards run the SQL and compare.
    """

    raw_sql: str
    format: SqlFormat
    columns: tuple[str, ...]
    ref_id: str = "A"

    def to_json(self) -> dict[str, object]:
        """Render the query as Grafana's PostgreSQL datasource stores it."""
        return {
            "datasource": PG,
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql.strip(),
            "refId": self.ref_id,
        }


class Sql(cogbuilder.Builder[SqlQuery]):
    """Builds a :class:`SqlQuery` for a panel's ``with_target``."""

    def __init__(
        self, raw_sql: str, format_val: SqlFormat, columns: tuple[str, ...], ref_id: str = "A"
    ) -> None:
        self._internal = SqlQuery(raw_sql, format_val, columns, ref_id)

    def build(self) -> SqlQuery:
        """Return the query."""
        return self._internal


class SqlAnnotationTarget(AnnotationTarget):
    """An annotation's PostgreSQL query: rows of ``time``, ``text`` and ``tags``.

    The SDK types an annotation's target as the built-in Grafana datasource's; Grafana's
    PostgreSQL datasource reads the same raw-SQL fields as in a panel.
    """

    def __init__(self, raw_sql: str, columns: tuple[str, ...]) -> None:
        super().__init__()
        self.query = SqlQuery(raw_sql, SqlFormat.TABLE, columns, ref_id="Anno")

    def to_json(self) -> dict[str, object]:
        """Render the query as Grafana's PostgreSQL datasource stores an annotation's."""
        return self.query.to_json()


class SqlAnnotation(cogbuilder.Builder[AnnotationTarget]):
    """Builds a :class:`SqlAnnotationTarget` for an annotation's ``target``."""

    def __init__(self, raw_sql: str, columns: tuple[str, ...]) -> None:
        self._internal = SqlAnnotationTarget(raw_sql, columns)

    def build(self) -> SqlAnnotationTarget:
        """Return the annotation's query."""
        return self._internal

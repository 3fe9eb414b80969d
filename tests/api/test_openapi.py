"""The OpenAPI document: generated from the routes, and the server keeps to it (schemathesis)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import hypothesis
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import ApiSettings, create_app, endpoints
from core.settings import DatabaseSettings
from tests.api.conftest import ADMIN, api_settings
from tests.api.helpers import load, serve_in_thread
from tests.ingest.helpers import T0, series


async def test_document_covers_every_route(client: Any) -> None:
    doc = await (await client.get("/v1/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    operations = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert operations == {(e.method, e.path) for e in endpoints()}
    readings = doc["paths"]["/v1/devices/{device_id}/readings"]["get"]
    names = {p["name"]: p["in"] for p in readings["parameters"]}
    assert names["device_id"] == "path"
    assert {"metric", "start", "end", "limit", "cursor", "bucket", "agg"} <= set(names)
    assert set(readings["responses"]) == {"200", "400", "401", "404", "429", "503"}
    assert doc["paths"]["/v1/devices"]["post"]["responses"]["403"]
    assert "DeviceCreated" in doc["components"]["schemas"]


# No 5xx, and status, content type and body as documented. Left out: the check that every
# schema-valid request is accepted, since some are rightly refused (a reversed time range,
# a cursor this API never gave out, a comma list naming an unknown aggregate).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def base_url(db_url: str, storage_mode: str) -> Iterator[str]:
    settings: ApiSettings = api_settings()
    app = create_app(settings, DatabaseSettings(database_url=db_url, db_pool_min=1))
    with serve_in_thread(app) as url:
        yield url


@pytest.mark.parametrize("storage_mode", ["plain"])
def test_schemathesis_finds_no_5xx_and_no_nonconforming_response(
    base_url: str, db_url: str, storage_mode: str
) -> None:
    asyncio.run(load(db_url, storage_mode, "pump-1", series(0, T0, 120)))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dead_letters (source, device_id, reason, payload)"
            " VALUES ('http', 'pump-1', 'schema', '\\xff00'::bytea)"
        )
    schema = schemathesis.openapi.from_url(f"{base_url}/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    # Schemathesis leaves out the operation that serves the document itself.
    assert len(operations) == len(endpoints()) - 1

    @given(data=st.data())
    @hypothesis.settings(
        max_examples=len(operations) * 25,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(operations))
        case = data.draw(operation.as_strategy())
        case.call_and_validate(base_url=base_url, headers=ADMIN, checks=CHECKS)

    check()

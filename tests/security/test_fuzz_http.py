"""Hostile requests against ``POST /v1/telemetry`` on a real database.

A CI sample of the generated requests (``benchmarks/fuzz.py`` sends 100,000), then the
named cases of the issue one by one. Whatever arrives, the answer is a 200 with a
documented reason per rejected item or a 4xx naming what was wrong, never a 5xx, the
server keeps serving and the tables stay as they were.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from tests.conftest import _Templates
from tests.security.hostile import (
    NON_FINITE_LITERALS,
    SQL_NAMES,
    HostileRequest,
    check_answer,
    hostile_requests,
)
from tests.security.servers import Answer, register, request
from tests.support.db import DatabaseServer
from tests.support.processes import ServiceProcess, http_only_ingest_env

DEVICE = "fuzz-1"
MEGABYTE = "Q" * 1_000_000


@dataclass(frozen=True)
class Intake:
    url: str
    token: str
    db_url: str

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> Answer:
        hdrs = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        return request(self.url, "POST", "/v1/telemetry", body, hdrs | (headers or {}))

    def send(self, hostile: HostileRequest) -> Answer:
        return self.post(hostile.body, hostile.headers)


@pytest.fixture(scope="module")
def intake(
    pg_server: DatabaseServer,
    migrated_templates: _Templates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Intake]:
    # A process of its own: hypothesis refuses to draw while a thread of ours (the pool's
    # jitter) uses the random module.
    name = pg_server.create_database(template=migrated_templates.get("plain"))
    db_url = pg_server.url_for(name)
    token = register(db_url, DEVICE)
    log = tmp_path_factory.mktemp("ingest") / "ingest.log"
    with ServiceProcess("ingest", http_only_ingest_env(db_url), log) as ingest:
        yield Intake(ingest.url, token, db_url)
    pg_server.drop_database(name)


def table_counts(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]
            for table in ("devices", "metrics", "readings", "dead_letters", "api_keys")
        }


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_requests())
def test_hostile_requests_get_documented_answers(intake: Intake, hostile: HostileRequest) -> None:
    status, answer = intake.send(hostile)
    check_answer(status, answer)


def test_the_server_still_serves_and_the_registry_is_intact(intake: Intake) -> None:
    status, answer = intake.post(json.dumps({"values": {"alive": 1}}).encode())
    assert (status, answer["accepted"]) == (200, 1)
    counts = table_counts(intake.db_url)
    assert counts["devices"] == 1
    assert counts["api_keys"] == 0


def now_item(**fields: object) -> dict[str, object]:
    return {"ts": datetime.now(UTC).isoformat(), "values": {"temp": 1.0}} | fields


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b"[" * 100_000, 400, "malformed_json", id="100k-open-arrays"),
        pytest.param(
            b"[" * 100_000 + b"1" + b"]" * 100_000, 400, "malformed_json", id="100k-nested"
        ),
        pytest.param(b'{"values":' * 50_000, 400, "malformed_json", id="50k-nested-objects"),
        pytest.param(b'{"values": {"temp": "\xff"}}', 400, "malformed_json", id="invalid-utf8"),
        pytest.param(b'{"values": {"t\\ud800": 1}}', 400, "malformed_json", id="lone-surrogate"),
        pytest.param(b"[" + b",".join([b'{"values":{"t":1}}'] * 10_001) + b"]", 400, "too_large"),
        pytest.param(b"x" * 2_000_000, 413, "too_large", id="2-MB-body"),
        pytest.param(b'"' + MEGABYTE.encode() + b'"', 400, "schema", id="megabyte-string-body"),
        pytest.param(b"null", 400, "schema", id="null"),
    ],
)
def test_named_bodies_refused_whole(intake: Intake, body: bytes, status: int, code: str) -> None:
    got, answer = intake.post(body)
    assert (got, answer["error"]) == (status, code)
    if status == 400 and code == "malformed_json":
        assert "line 1 column" in answer["detail"]  # says where


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        pytest.param(now_item(device_id=MEGABYTE), "invalid_name", id="megabyte-device-id"),
        pytest.param(now_item(values={MEGABYTE: 1}), "invalid_name", id="megabyte-metric"),
        pytest.param(now_item(values={"temp": MEGABYTE}), "too_long", id="megabyte-value"),
        pytest.param(now_item(ts=MEGABYTE), "schema", id="megabyte-ts"),
        *(
            pytest.param(now_item(values={name: 1}), "invalid_name", id=f"sql-metric-{i}")
            for i, name in enumerate(SQL_NAMES)
        ),
        *(
            pytest.param(now_item(device_id=name), "invalid_name", id=f"sql-device-{i}")
            for i, name in enumerate(SQL_NAMES)
        ),
    ],
)
def test_named_items_rejected_with_their_reason(
    intake: Intake, item: dict[str, object], reason: str
) -> None:
    before = table_counts(intake.db_url)
    status, answer = intake.post(json.dumps([now_item(values={"ok": 1}), item]).encode())
    assert status == 200
    assert answer["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(1, reason)]
    assert len(answer["rejected"][0]["detail"]) <= 200  # never echoes a megabyte back
    after = table_counts(intake.db_url)
    assert after["dead_letters"] == before["dead_letters"] + 1  # nothing dropped silently
    assert after["devices"] == before["devices"]


@pytest.mark.parametrize("literal", NON_FINITE_LITERALS)
@pytest.mark.parametrize("field", ["value", "ts"])
def test_non_finite_numbers_rejected_as_non_finite(
    intake: Intake, literal: bytes, field: str
) -> None:
    item = b'{"values": {"temp": %s}}' % literal
    if field == "ts":
        item = b'{"ts": %s, "values": {"temp": 1}}' % literal
    status, answer = intake.post(item)
    assert status == 200
    assert [r["reason"] for r in answer["rejected"]] == ["non_finite"]


def test_senml_non_finite_and_sql_names(intake: Intake) -> None:
    pack = b'[{"bn": "x/", "n": "temp", "v": NaN}, {"n": "%s", "v": 1}, {"n": "ok", "v": 1}]' % (
        SQL_NAMES[0].encode()
    )
    status, answer = intake.post(pack, {"Content-Type": "application/senml+json"})
    assert status == 200
    assert answer["accepted"] == 1
    assert [r["reason"] for r in answer["rejected"]] == ["non_finite", "invalid_name"]


@pytest.mark.parametrize("inflated", [2_000_000, 50_000_000])
def test_gzip_bomb_is_refused_after_the_limit(intake: Intake, inflated: int) -> None:
    bomb = gzip.compress(b"[" + b" " * inflated + b"]", compresslevel=9)
    assert len(bomb) < 100_000
    status, answer = intake.post(bomb, {"Content-Encoding": "gzip"})
    assert (status, answer["error"]) == (413, "too_large")


def test_oversized_body_is_refused_without_reading_it_all(intake: Intake) -> None:
    # Announce 100 MB, send 1.5 MB: the 413 arrives although most of the body never does.
    host, port = intake.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + intake.token.encode() + b"\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        sock.sendall(b" " * 1_500_000)
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413 ")

"""Export as CSV and NDJSON, streamed in constant memory."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from aiohttp.test_utils import TestClient

from ingest import maintenance
from tests.api.conftest import ADMIN
from tests.api.helpers import load
from tests.ingest.helpers import T0, series


def _z(t: datetime) -> str:
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


async def test_csv_and_ndjson_hold_every_reading_in_order(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    await load(db_url, storage_mode, "a", series(0, T0, 30))
    await load(db_url, storage_mode, "b", series(0, T0, 5, metrics=("temperature",)))
    params = {"device": "b,a", "start": _z(T0), "end": _z(T0 + timedelta(seconds=20))}
    r = await client.get("/v1/export", params=params, headers=ADMIN)
    assert r.status == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(await r.text())))
    assert rows[0] == ["device_id", "metric", "ts", "value", "unit"]
    assert len(rows) == 1 + 5 + 2 * 20
    assert rows[1] == ["b", "temperature", _z(T0), "0.25", ""]
    # Metrics come in the order they were first stored (humidity sorts first in a batch).
    assert rows[6] == ["a", "humidity", _z(T0), "1.25", ""]
    r = await client.get("/v1/export", params=params | {"format": "ndjson"}, headers=ADMIN)
    assert r.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    lines = [json.loads(line) for line in (await r.text()).splitlines()]
    assert len(lines) == 45
    assert lines[-1] == {
        "device_id": "a",
        "metric": "temperature",
        "ts": _z(T0 + timedelta(seconds=19)),
        "value": 190.25,
        "unit": None,
    }
    r = await client.get("/v1/export", params=params | {"metric": "humidity"}, headers=ADMIN)
    assert len((await r.text()).splitlines()) == 1 + 20
    r = await client.get("/v1/export", params=params | {"device": "a,zz"}, headers=ADMIN)
    assert r.status == 404
    r = await client.get("/v1/export", params=params | {"format": "xml"}, headers=ADMIN)
    assert r.status == 400
    r = await client.get("/v1/export", params={"device": "a"}, headers=ADMIN)
    assert r.status == 400


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


ROWS = 2_100_000


@pytest.mark.parametrize("storage_mode", ["plain"])
async def test_export_of_millions_of_rows_runs_in_constant_memory(
    client: TestClient,  # type: ignore[type-arg]
    db_url: str,
    storage_mode: str,
) -> None:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    step_ms = 30  # 3 metrics x 700,000 readings over 5.8 hours: within today
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await maintenance.create_day_partitions(conn, [start.date()])
        key = (
            await (
                await conn.execute(
                    "INSERT INTO devices (device_id) VALUES ('big') RETURNING device_key"
                )
            ).fetchone()
        )[0]  # type: ignore[index]
        await conn.execute("INSERT INTO metrics (name) VALUES ('m1'), ('m2'), ('m3')")
        await conn.execute(
            "INSERT INTO readings (time, device_key, metric_key, value)"
            " SELECT %s + g * %s * interval '1 millisecond', %s, m.metric_key, g * 0.5"
            " FROM generate_series(0, %s - 1) g CROSS JOIN metrics m",
            [start, step_ms, key, ROWS // 3],
        )
    params = {"device": "big", "start": _z(start), "end": _z(start + timedelta(days=1))}
    for fmt in ("csv", "ndjson"):
        baseline = _rss_bytes()
        peak, size, lines = baseline, 0, 0
        r = await client.get("/v1/export", params=params | {"format": fmt}, headers=ADMIN)
        assert r.status == 200
        async for chunk in r.content.iter_chunked(1 << 16):
            size += len(chunk)
            lines += chunk.count(b"\n")
            peak = max(peak, _rss_bytes()) if lines % 64 == 0 else peak
        assert lines == ROWS + (1 if fmt == "csv" else 0)
        # Client and server share this process: both must stay far below the output size.
        assert size > 80_000_000
        assert peak - baseline < 60_000_000, (fmt, peak - baseline)

"""``GET /v1/export``: readings as CSV or NDJSON, streamed in constant memory.

PostgreSQL formats the rows (``COPY ... TO STDOUT``), one index range scan per device and
metric, and the handler passes them on in chunks of about 64 KiB. Each ``write`` waits
for the client to drain, so a slow reader slows the query instead of filling memory.
Values keep their type (NDJSON: numbers, true/false, strings; CSV: their text), and each
row carries the device's unit of the metric (empty where none was given).
"""

from __future__ import annotations

import re

from aiohttp import web

from api import queries, queries_typed
from api.context import DATABASE
from api.errors import BadRequestError, NotFoundError
from api.models import DEVICE_ID_PATTERN, ErrorBody, ExportParams
from api.routes_devices import metric_keys
from api.routes_readings import time_range, units_of
from api.routing import Reply, Router

__all__ = ["router"]

router = Router()

_CHUNK_BYTES = 65_536
_MAX_DEVICES = 100
_CSV_HEADER = b"device_id,metric,ts,value,unit\n"
_MEDIA = {"csv": "text/csv", "ndjson": "application/x-ndjson"}


def _device_ids(text: str) -> list[str]:
    ids = list(dict.fromkeys(text.split(",")))
    if len(ids) > _MAX_DEVICES:
        raise BadRequestError(f"device: at most {_MAX_DEVICES} devices per export")
    for device_id in ids:
        if not re.fullmatch(DEVICE_ID_PATTERN, device_id):
            raise BadRequestError(f"device: {device_id!r} is not a device id")
    return ids


@router.stream(
    "GET",
    "/v1/export",
    params=ExportParams,
    replies=[
        Reply(
            200,
            "readings ordered by device, metric and time: CSV with a header line"
            " (device_id,metric,ts,value,unit), or one JSON object a line",
            {"type": "string"},
            tuple(_MEDIA.values()),
        )
    ],
    scope="read",
    tag="readings",
    errors=[Reply(404, "a device does not exist", ErrorBody)],
)
async def export(request: web.Request, params: ExportParams) -> web.StreamResponse:
    """Stream the readings of devices in a time range as CSV or NDJSON."""
    start, end = time_range(params.start, params.end)
    ids = _device_ids(params.device)
    db = request.app[DATABASE]
    csv = params.format == "csv"
    statements = {
        True: queries.COPY_CSV if csv else queries.COPY_NDJSON,
        False: queries_typed.COPY_CSV_TYPED if csv else queries_typed.COPY_NDJSON_TYPED,
    }
    async with db.connection() as conn:
        cur = await conn.execute(queries.DEVICE_KEYS, [ids])
        keys = dict(await cur.fetchall())
        missing = [i for i in ids if i not in keys]
        if missing:
            raise NotFoundError(f"no device {missing[0]!r}")
        metrics = await metric_keys(conn, params.metric)
        response = web.StreamResponse(
            headers={
                "Content-Type": f"{_MEDIA[params.format]}; charset=utf-8",
                "Content-Disposition": f'attachment; filename="readings.{params.format}"',
            }
        )
        await response.prepare(request)
        chunk = bytearray(_CSV_HEADER if params.format == "csv" else b"")
        async with conn.transaction():
            # An export may rightly run for minutes; the pool's statement timeout is for queries.
            await conn.execute(queries.NO_STATEMENT_TIMEOUT)
            for device_id in ids:
                units = await units_of(conn, keys[device_id], metrics)
                for metric_key, metric in metrics.items():
                    args = {
                        "device_id": device_id,
                        "metric": metric.name,
                        "device_key": keys[device_id],
                        "metric_key": metric_key,
                        "start": start,
                        "end": end,
                        "unit": units.get(metric_key),
                    }
                    statement = statements[metric.type == "number"]
                    async with conn.cursor().copy(statement, args) as copy:
                        async for row in copy:
                            chunk += row
                            if len(chunk) >= _CHUNK_BYTES:
                                await response.write(bytes(chunk))
                                chunk.clear()
        if chunk:
            await response.write(bytes(chunk))
    await response.write_eof()
    return response

"""Readings and latest values in PostgreSQL's binary COPY format, built in bulk.

Per row, one ``struct.pack`` call instead of a ``write_row`` coroutine: that took a quarter
of the writer's CPU. A row is its field count, then (length, value) per column; a length
of -1 is NULL.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from ingest.records import ReadingSet

__all__ = ["encode_latest", "encode_readings"]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, extension length
_TRAILER = b"\xff\xff"
_ROW = struct.Struct("!hiqiiihid")  # 4 fields: time int8, device int4, metric int2, float8
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# Latest values, 6 fields: device int4, metric int2, time int8, then one of value float8,
# value_bool bool, value_text text, the other two NULL.
_LATEST_NUMBER = struct.Struct("!hiiihiqidii")
_LATEST_BOOLEAN = struct.Struct("!hiiihiqii?i")
_LATEST_TEXT_HEAD = struct.Struct("!hiiihiqiii")


def encode_readings(sets: Sequence[ReadingSet], keys: Mapping[str, int]) -> bytes:
    """Encode the rows of ``sets`` (metric names mapped by ``keys``), header and trailer included.

    Columns in the order of ``statements.COPY_READINGS``: time, device_key, metric_key, value.
    """
    pack, epoch = _ROW.pack, _PG_EPOCH
    rows = [
        pack(4, 8, micros, 4, device_key, 2, keys[name], 8, value)
        for device_key, ts, values in sets
        for d in (ts - epoch,)
        for micros in ((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds,)
        for name, value in values.items()
    ]
    return b"".join((_HEADER, *rows, _TRAILER))


def encode_latest(
    rows: Iterable[tuple[int, int, datetime, float | bool | str]],
) -> bytes:
    """Encode (device_key, metric_key, time, value) rows, header and trailer included.

    Columns in the order of ``statements.COPY_LATEST``: device_key, metric_key, time, value,
    value_bool, value_text; a value goes in the column of its type, the others are NULL.
    """
    epoch = _PG_EPOCH
    number, boolean, text_head = _LATEST_NUMBER.pack, _LATEST_BOOLEAN.pack, _LATEST_TEXT_HEAD.pack
    out = [_HEADER]
    for device_key, metric_key, ts, value in rows:
        d = ts - epoch
        micros = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
        if type(value) is bool:
            out.append(boolean(6, 4, device_key, 2, metric_key, 8, micros, -1, 1, value, -1))
        elif type(value) is str:
            data = value.encode()
            out.append(text_head(6, 4, device_key, 2, metric_key, 8, micros, -1, -1, len(data)))
            out.append(data)
        else:
            out.append(number(6, 4, device_key, 2, metric_key, 8, micros, 8, value, -1, -1))
    out.append(_TRAILER)
    return b"".join(out)

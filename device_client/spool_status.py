"""What a spool holds and has done, read in one transaction (also from another process).

``python -m device_client status`` reads it beside a running agent: the database is
opened read-only, so the agent's writes go on undisturbed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from device_client.errors import SpoolError

__all__ = ["COUNTERS", "META_ALL", "TOTALS", "SpoolStatus", "opt_str", "read_status", "status_from"]

TOTALS = "SELECT count(*), coalesce(sum(length(body)), 0) FROM readings"
_OLDEST = "SELECT seq, body FROM readings ORDER BY seq LIMIT 1"
META_ALL = "SELECT key, value FROM meta"

# Counters kept in the meta table; status reports them.
COUNTERS = (
    "spooled_total",
    "sent_total",
    "rejected_total",
    "dropped_total",
    "paused_samples_total",
    "batches_total",
)


@dataclass(frozen=True)
class SpoolStatus:
    """What ``python -m device_client status`` shows."""

    path: str
    device_id: str | None
    depth_rows: int
    depth_bytes: int
    oldest_seq: int | None
    oldest_ts: str | None
    next_seq: int
    counters: Mapping[str, int]
    last_send_ok_at: str | None
    last_error: str | None
    last_error_at: str | None


def opt_str(value: object) -> str | None:
    """Return ``value`` as text, or None."""
    return None if value is None else str(value)


def status_from(conn: sqlite3.Connection, path: str) -> SpoolStatus:
    """Read the status in one read transaction of ``conn``."""
    conn.execute("BEGIN")
    try:
        meta = dict(conn.execute(META_ALL).fetchall())
        rows, nbytes = conn.execute(TOTALS).fetchone()
        oldest = conn.execute(_OLDEST).fetchone()
    finally:
        conn.execute("COMMIT")
    oldest_ts: str | None = None
    if oldest is not None:
        try:
            oldest_ts = str(json.loads(oldest[1])["ts"])
        except (ValueError, KeyError, TypeError):
            oldest_ts = None
    return SpoolStatus(
        path=path,
        device_id=opt_str(meta.get("device_id")),
        depth_rows=int(rows),
        depth_bytes=int(nbytes),
        oldest_seq=None if oldest is None else int(oldest[0]),
        oldest_ts=oldest_ts,
        next_seq=int(meta.get("next_seq", 1)),
        counters={key: int(meta.get(key, 0)) for key in COUNTERS},
        last_send_ok_at=opt_str(meta.get("last_send_ok_at")),
        last_error=opt_str(meta.get("last_error")),
        last_error_at=opt_str(meta.get("last_error_at")),
    )


def read_status(path: Path) -> SpoolStatus:
    """Read a spool's status without writing to it (safe beside a running agent)."""
    if not path.exists():
        raise SpoolError(f"no spool at {path} (has the agent run yet?)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot open spool {path}: {exc}") from exc
    try:
        return status_from(conn, str(path))
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot read spool {path}: {exc}") from exc
    finally:
        conn.close()

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from device_client import ResourceStateError, Spool, SpoolConfig, SpoolError, read_status
from device_client.spool import ACK_FLUSH_ROWS
from device_client.wire import Value


def samples(n: int, start: int = 0) -> list[tuple[str, Mapping[str, Value], str | None]]:
    return [
        (f"2026-01-01T00:00:{(start + i) % 60:02d}.000000Z", {"v": float(start + i)}, None)
        for i in range(n)
    ]


def config(tmp_path: Path, **kw: object) -> SpoolConfig:
    return SpoolConfig(path=tmp_path / "spool.db", **kw)  # type: ignore[arg-type]


def test_wal_one_commit_per_batch_and_acks_ride_along(tmp_path: Path) -> None:
    with Spool(config(tmp_path), "dev") as spool:
        conn = spool._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        spool.append(samples(50))
        assert spool.commits == 1
        rows = spool.read_after(0, 100)
        assert [r.seq for r in rows] == list(range(1, 51))
        body = json.loads(rows[0].body)
        assert body == {"ts": "2026-01-01T00:00:00.000000Z", "seq": 1, "values": {"v": 0.0}}
        spool.ack(1, 50, sent=50)
        assert spool.commits == 1  # the deletion waits for the next batch
        spool.append(samples(50, 50))
        assert spool.commits == 2
        assert spool.depth[0] == 50
        assert spool.read_after(0, 1)[0].seq == 51
        status = spool.status()
        assert status.counters["sent_total"] == 50
        assert status.counters["spooled_total"] == 100
        assert status.last_send_ok_at is not None


def test_big_ack_backlog_is_flushed(tmp_path: Path) -> None:
    with Spool(config(tmp_path), "dev") as spool:
        spool.append(samples(ACK_FLUSH_ROWS + 10))
        spool.ack(1, ACK_FLUSH_ROWS, sent=ACK_FLUSH_ROWS)
        assert spool.commits == 2
        assert spool.depth[0] == 10


def test_seq_survives_reopen_even_when_empty(tmp_path: Path) -> None:
    with Spool(config(tmp_path), "dev") as spool:
        spool.append(samples(5))
        spool.ack(1, 5, sent=5)
    with Spool(config(tmp_path), "dev") as spool:
        assert spool.depth == (0, 0)
        assert spool.next_seq == 6
        spool.append(samples(1))
        assert spool.read_after(0, 10)[0].seq == 6


def test_drop_oldest_policy(tmp_path: Path) -> None:
    with Spool(config(tmp_path, max_rows=20), "dev") as spool:
        spool.append(samples(15))
        assert spool.append(samples(10, 15)) == 5
        assert spool.depth[0] == 20
        assert spool.read_after(0, 1)[0].seq == 6
        assert spool.status().counters["dropped_total"] == 5
    with Spool(config(tmp_path / "b", max_rows=1000, max_bytes=700), "dev") as spool:
        spool.append(samples(20))
        assert spool.depth[1] <= 700
        assert spool.read_after(0, 100)[-1].seq == 20


def test_pause_policy_keeps_what_fits(tmp_path: Path) -> None:
    with Spool(config(tmp_path, max_rows=20, full_policy="pause"), "dev") as spool:
        spool.append(samples(15))
        assert spool.has_room(5, 100)
        assert not spool.has_room(6, 100)
        assert spool.append(samples(10, 15)) == 5
        assert [r.seq for r in spool.read_after(0, 100)] == list(range(1, 21))
        spool.ack(1, 10, sent=10)
        assert spool.has_room(6, 100)  # applying the ack makes room


def test_state_guard_and_owner(tmp_path: Path) -> None:
    spool = Spool(config(tmp_path), "dev")
    with pytest.raises(ResourceStateError):
        spool.read_after(0, 1)
    with spool:
        spool.append(samples(1))
        with pytest.raises(ResourceStateError):
            spool.open()
    with pytest.raises(ResourceStateError):
        spool.append(samples(1))
    with pytest.raises(SpoolError, match="belongs to device 'dev'"):
        Spool(config(tmp_path), "other").open()


def test_read_status_is_read_only(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="no spool"):
        read_status(tmp_path / "spool.db")
    with Spool(config(tmp_path), "dev") as spool:
        spool.append(samples(3))
        spool.note_error("broker unreachable")
        spool.flush()
        status = read_status(tmp_path / "spool.db")
    assert status.depth_rows == 3
    assert status.oldest_seq == 1
    assert status.oldest_ts == "2026-01-01T00:00:00.000000Z"
    assert status.last_error == "broker unreachable"

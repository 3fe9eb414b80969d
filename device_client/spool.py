"""The on-disk spool: an SQLite database in WAL mode holding readings not yet acknowledged.

Readings arrive in batches and each batch is one transaction, to spare SD cards; deletions
of acknowledged readings are kept in memory and ride along with the next batch (or are
flushed after a while), so a quiet device writes about one commit per batch interval.
A crash between an acknowledgement and its flush only makes the device send those readings
again, which the server counts as duplicates: a reading never leaves the spool before it
is acknowledged.

The per-device ``seq`` counter lives in the same database and advances in the same
transaction as the readings it numbers, so it survives restarts and never repeats.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from device_client.config import SpoolConfig
from device_client.errors import ResourceStateError, SpoolError
from device_client.spool_status import META_ALL, TOTALS, SpoolStatus, opt_str, status_from
from device_client.wire import Value, encode_reading, utc_now_ts

__all__ = ["Spool", "SpoolRow"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS readings (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    # WITHOUT ROWID: one b-tree instead of table plus index, one page less per commit.
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID",
)
_INSERT = "INSERT INTO readings (seq, body) VALUES (?, ?)"
_RANGE_SIZE = (
    "SELECT count(*), coalesce(sum(length(body)), 0) FROM readings WHERE seq BETWEEN ? AND ?"
)
_DELETE_RANGE = "DELETE FROM readings WHERE seq BETWEEN ? AND ?"
_OLDEST_SIZES = "SELECT seq, length(body) FROM readings WHERE seq > ? ORDER BY seq LIMIT 500"
_DELETE_UP_TO = "DELETE FROM readings WHERE seq <= ?"
_READ_AFTER = "SELECT seq, body FROM readings WHERE seq > ? ORDER BY seq LIMIT ?"
_NEWEST_SEQ = "SELECT max(seq) FROM readings"
_META_PUT = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_META_ADD = (
    "INSERT INTO meta (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value"
)

# Above this many acknowledged-but-not-deleted rows the deletion is committed at once,
# so that a fast backlog drain does not hold an unbounded list in memory.
ACK_FLUSH_ROWS = 2000


@dataclass(frozen=True)
class SpoolRow:
    """One stored reading-set: its seq and its encoded wire-v1 object."""

    seq: int
    body: str


class _State:
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class Spool:
    """A bounded, crash-safe FIFO of reading-sets; a context manager, opened once.

    Thread-safe: the sampler appends while the sender reads and acknowledges.
    """

    def __init__(self, config: SpoolConfig, device_id: str) -> None:
        self.config = config
        self.device_id = device_id
        self.commits = 0
        self._state = _State.UNOPENED
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._next_seq = 1
        self._rows = 0
        self._bytes = 0
        self._pending_acks: list[list[int]] = []
        self._pending_ack_rows = 0
        self._pending_meta: dict[str, object] = {}
        self._pending_counts: dict[str, int] = {}
        self._pending_since: float | None = None

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> Spool:
        """Open (creating if needed) the database; raise SpoolError if it is unusable."""
        if self._state != _State.UNOPENED:
            raise ResourceStateError(f"the spool is {self._state}; a Spool is opened only once")
        path = self.config.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30
            )
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open spool {path}: {exc}") from exc
        try:
            self._init(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise SpoolError(f"spool {path} is unusable: {exc}") from exc
        except SpoolError:
            conn.close()
            raise
        self._conn = conn
        self._state = _State.OPEN
        log.info(
            "spool %s open: %d reading-sets (%d bytes) waiting, next seq %d",
            path,
            self._rows,
            self._bytes,
            self._next_seq,
        )
        return self

    def _init(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SpoolError(f"spool {self.config.path}: WAL mode unavailable (got {mode})")
        conn.execute(f"PRAGMA synchronous={self.config.synchronous.upper()}")
        # Keeps the WAL file from staying large after a big backlog has drained.
        conn.execute("PRAGMA journal_size_limit=8388608")
        # Appends and deletes touch the ends of one b-tree: a small cache is enough (RSS).
        conn.execute("PRAGMA cache_size=-512")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SpoolError(f"spool {self.config.path} has schema {version}, newer than ours")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            meta = dict(conn.execute(META_ALL).fetchall())
            self._check_owner(conn, meta.get("device_id"))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        newest = conn.execute(_NEWEST_SEQ).fetchone()[0]
        self._next_seq = max(int(meta.get("next_seq", 1)), (newest or 0) + 1)
        self._rows, self._bytes = conn.execute(TOTALS).fetchone()

    def _check_owner(self, conn: sqlite3.Connection, owner: object) -> None:
        if owner is None:
            conn.execute(_META_PUT, ("device_id", self.device_id))
        elif owner != self.device_id:
            raise SpoolError(
                f"spool {self.config.path} belongs to device {owner!r}, not "
                f"{self.device_id!r}: its readings would be sent under the wrong id"
            )

    def close(self) -> None:
        """Commit pending acknowledgements and close; closing twice is harmless."""
        with self._lock:
            if self._state != _State.OPEN:
                self._state = _State.CLOSED
                return
            assert self._conn is not None
            try:
                if self._has_pending():
                    with self._transaction():
                        pass
            finally:
                self._conn.close()
                self._conn = None
                self._state = _State.CLOSED

    def __enter__(self) -> Spool:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._state != _State.OPEN or self._conn is None:
            raise ResourceStateError(f"the spool is {self._state}")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One commit carrying the caller's writes plus every pending ack and counter."""
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Acks first: the room they free is what the caller's limits see.
            self._apply_pending(conn)
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SpoolError(f"spool write failed: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        self._pending_acks.clear()
        self._pending_ack_rows = 0
        self._pending_meta.clear()
        self._pending_counts.clear()
        self._pending_since = None

    def _apply_pending(self, conn: sqlite3.Connection) -> None:
        for first, last in self._pending_acks:
            rows, nbytes = conn.execute(_RANGE_SIZE, (first, last)).fetchone()
            if rows:
                conn.execute(_DELETE_RANGE, (first, last))
                self._rows -= rows
                self._bytes -= nbytes
        for key, delta in self._pending_counts.items():
            conn.execute(_META_ADD, (key, delta))
        for key, value in self._pending_meta.items():
            conn.execute(_META_PUT, (key, value))

    def _has_pending(self) -> bool:
        return bool(self._pending_acks or self._pending_meta or self._pending_counts)

    def _mark_pending(self) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()

    # -- writing -------------------------------------------------------------------

    def append(self, samples: Sequence[tuple[str, Mapping[str, Value], str | None]]) -> int:
        """Store reading-sets ``(ts, values, device)`` in one commit; return how many dropped.

        With ``drop_oldest`` the oldest stored rows make room (counted and logged); with
        ``pause`` the sampler should have stopped already, so only what fits is kept.
        """
        with self._lock:
            conn = self._db()
            seq = self._next_seq
            rows: list[tuple[int, str]] = []
            for ts, values, device in samples:
                rows.append((seq, encode_reading(ts, seq, values, device)))
                seq += 1
            dropped = 0
            with self._transaction():
                rows, dropped = self._make_room(conn, rows)
                conn.executemany(_INSERT, rows)
                self._rows += len(rows)
                self._bytes += sum(len(body) for _, body in rows)
                conn.execute(_META_PUT, ("next_seq", seq))
                for key, delta in (
                    ("spooled_total", len(rows)),
                    ("dropped_total", dropped),
                    ("batches_total", 1),
                ):
                    if delta:
                        conn.execute(_META_ADD, (key, delta))
            self._next_seq = seq
        if dropped:
            log.warning(
                "spool full (%s): dropped %d reading-sets to stay within %d rows / %d bytes",
                self.config.full_policy,
                dropped,
                self.config.max_rows,
                self.config.max_bytes,
            )
        return dropped

    def _make_room(
        self, conn: sqlite3.Connection, rows: list[tuple[int, str]]
    ) -> tuple[list[tuple[int, str]], int]:
        max_rows, max_bytes = self.config.max_rows, self.config.max_bytes
        dropped = 0
        # A batch larger than the whole spool keeps its newest part.
        while rows and (len(rows) > max_rows or sum(len(b) for _, b in rows) > max_bytes):
            rows = rows[1:]
            dropped += 1
        new_bytes = sum(len(body) for _, body in rows)
        excess_rows = self._rows + len(rows) - max_rows
        excess_bytes = self._bytes + new_bytes - max_bytes
        if excess_rows <= 0 and excess_bytes <= 0:
            return rows, dropped
        if self.config.full_policy == "pause":
            keep: list[tuple[int, str]] = []
            room_rows, room_bytes = max_rows - self._rows, max_bytes - self._bytes
            for seq, body in rows:
                if len(keep) + 1 > room_rows or len(body) > room_bytes:
                    break
                keep.append((seq, body))
                room_bytes -= len(body)
            return keep, dropped + len(rows) - len(keep)
        cutoff, freed_rows, freed_bytes = 0, 0, 0
        while freed_rows < excess_rows or freed_bytes < excess_bytes:
            chunk = conn.execute(_OLDEST_SIZES, (cutoff,)).fetchall()
            if not chunk:
                break
            for seq, size in chunk:
                cutoff = seq
                freed_rows += 1
                freed_bytes += size
                if freed_rows >= excess_rows and freed_bytes >= excess_bytes:
                    break
        conn.execute(_DELETE_UP_TO, (cutoff,))
        self._rows -= freed_rows
        self._bytes -= freed_bytes
        return rows, dropped + freed_rows

    def has_room(self, rows: int, nbytes: int) -> bool:
        """Whether ``rows`` more reading-sets of ``nbytes`` would fit without dropping."""
        with self._lock:
            if self._fits(rows, nbytes):
                return True
            if not self._pending_acks:
                return False
            # Acknowledged rows still take space until their deletion commits: do it now.
            with self._transaction():
                pass
            return self._fits(rows, nbytes)

    def _fits(self, rows: int, nbytes: int) -> bool:
        return (
            self._rows + rows <= self.config.max_rows
            and self._bytes + nbytes <= self.config.max_bytes
        )

    def ack(self, first_seq: int, last_seq: int, *, sent: int, rejected: int = 0) -> None:
        """Record that ``first_seq..last_seq`` were acknowledged (deleted at the next commit)."""
        with self._lock:
            self._db()
            if self._pending_acks and self._pending_acks[-1][1] + 1 == first_seq:
                self._pending_acks[-1][1] = last_seq
            else:
                self._pending_acks.append([first_seq, last_seq])
            self._pending_ack_rows += sent + rejected
            self._pending_counts["sent_total"] = self._pending_counts.get("sent_total", 0) + sent
            if rejected:
                self._pending_counts["rejected_total"] = (
                    self._pending_counts.get("rejected_total", 0) + rejected
                )
            self._pending_meta["last_send_ok_at"] = utc_now_ts()
            self._mark_pending()
            if self._pending_ack_rows >= ACK_FLUSH_ROWS:
                with self._transaction():
                    pass

    def note_error(self, message: str) -> None:
        """Remember the last error for ``status``; written with the next commit."""
        with self._lock:
            self._pending_meta["last_error"] = message[:500]
            self._pending_meta["last_error_at"] = utc_now_ts()
            self._mark_pending()

    def count(self, key: str, delta: int = 1) -> None:
        """Add to one of the persistent counters; written with the next commit."""
        with self._lock:
            self._pending_counts[key] = self._pending_counts.get(key, 0) + delta
            self._mark_pending()

    def flush(self, max_age_s: float = 0.0) -> bool:
        """Commit pending acks and notes older than ``max_age_s``; return whether it did."""
        with self._lock:
            self._db()
            if self._pending_since is None:
                return False
            if time.monotonic() - self._pending_since < max_age_s:
                return False
            with self._transaction():
                pass
            return True

    # -- reading -------------------------------------------------------------------

    def read_after(self, after_seq: int, limit: int) -> list[SpoolRow]:
        """Return the oldest ``limit`` reading-sets with a seq above ``after_seq``."""
        with self._lock:
            rows = self._db().execute(_READ_AFTER, (after_seq, limit)).fetchall()
        return [SpoolRow(seq, body) for seq, body in rows]

    @property
    def depth(self) -> tuple[int, int]:
        """Reading-sets and bytes stored, including acknowledged ones not yet deleted."""
        return self._rows, self._bytes

    @property
    def backlog(self) -> int:
        """Reading-sets not yet acknowledged (about: a range may have been dropped since)."""
        return max(0, self._rows - self._pending_ack_rows)

    @property
    def next_seq(self) -> int:
        """The seq the next stored reading-set will get."""
        return self._next_seq

    def status(self) -> SpoolStatus:
        """Return a consistent snapshot, pending notes included."""
        with self._lock:
            conn = self._db()
            status = status_from(conn, str(self.config.path))
        counters = dict(status.counters)
        for key, delta in self._pending_counts.items():
            counters[key] = counters.get(key, 0) + delta
        meta = self._pending_meta
        return SpoolStatus(
            path=status.path,
            device_id=status.device_id,
            depth_rows=status.depth_rows,
            depth_bytes=status.depth_bytes,
            oldest_seq=status.oldest_seq,
            oldest_ts=status.oldest_ts,
            next_seq=self._next_seq,
            counters=counters,
            last_send_ok_at=opt_str(meta.get("last_send_ok_at")) or status.last_send_ok_at,
            last_error=opt_str(meta.get("last_error")) or status.last_error,
            last_error_at=opt_str(meta.get("last_error_at")) or status.last_error_at,
        )

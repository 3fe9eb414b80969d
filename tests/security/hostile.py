"""Hostile inputs for the intake, shared by the fuzz tests and ``benchmarks/fuzz.py``.

:func:`hostile_requests` draws request bodies meant to break a parser or a server: random
bytes, mutated JSON, huge and deeply nested documents, megabyte strings, NaN and Infinity
literals, invalid UTF-8, lone surrogates, duplicate keys, SQL-looking names, oversized
batches and gzip bombs. :func:`check_parsed` and :func:`check_answer` state what must hold
for every one of them: no exception, no 5xx, and a documented reason code for each refusal.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from hypothesis import strategies as st

from ingest.wire import Format, Parsed, Reason, parse_payload
from ingest.wire.base import MAX_TEXT_BYTES

__all__ = [
    "HTTP_ERROR_CODES",
    "NON_FINITE_LITERALS",
    "REASONS",
    "SQL_NAMES",
    "HostileRequest",
    "check_answer",
    "check_parsed",
    "hostile_bodies",
    "hostile_requests",
    "parse_both",
]

REASONS: Final = frozenset(reason.value for reason in Reason)
# Error codes of whole-request answers other than the parser's reasons (docs/ingest.md).
HTTP_ERROR_CODES: Final = REASONS | {
    "unauthorized",
    "unsupported_media_type",
    "rate_limited",
    "unavailable",
    "timeout",
}
SQL_NAMES: Final = (
    "'; DROP TABLE readings;--",
    "x'); DROP TABLE devices;--",
    "' OR '1'='1",
    "1; DELETE FROM readings",
    "temp; TRUNCATE dead_letters",
    'a"; DROP TABLE metrics;--',
)
NON_FINITE_LITERALS: Final = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e999",
    b"1" + b"0" * 400,
)
# Byte sequences that are not text: invalid UTF-8, an encoded surrogate, a NUL, escapes of
# lone surrogates (valid JSON syntax, but no Unicode string).
_BAD_TEXT: Final = (
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\\ud800",
    b"\\udfff",
    b"a\\u0000b",
    b"\x00",
)
_MEGABYTE: Final = 1_000_000
_KNOWN_KEYS: Final = ("values", "ts", "seq", "device_id", "n", "v", "vb", "vs", "bn", "bt", "t")

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(SQL_NAMES)
)
_documents = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.sampled_from(_KNOWN_KEYS) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=15,
)
_names = st.sampled_from(SQL_NAMES) | st.text(max_size=70) | st.just("temperature")


def _render(value: object) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """Valid JSON with bytes cut out and hostile bytes put in."""
    body = _render(draw(_documents))
    position = draw(st.integers(min_value=0, max_value=len(body)))
    cut = draw(st.integers(min_value=0, max_value=8))
    noise = draw(st.sampled_from([*_BAD_TEXT, *NON_FINITE_LITERALS, b"[", b"}", b'"', b","]))
    return body[:position] + noise + body[position + cut :]


@st.composite
def _spliced(draw: st.DrawFn) -> bytes:
    """A plausible v1 item or SenML record with a raw literal where a value belongs."""
    literal = draw(st.sampled_from([*NON_FINITE_LITERALS, b"true", b"null", b"[]", b"{}", b"-0"]))
    text = b'"' + draw(st.sampled_from(_BAD_TEXT)) + b'"'
    templates = [
        b'{"values": {"temp": %s}}' % literal,
        b'{"ts": %s, "values": {"temp": 1}}' % literal,
        b'{"values": {%s: 1}}' % text,
        b'{"device_id": %s, "values": {"temp": 1}}' % text,
        b'{"values": {"a": 1}, "values": {"b": %s}}' % literal,
        b'{"values": {"a": 1, "a": %s}}' % literal,
        b'[{"bn": "dev/", "n": "temp", "v": %s}]' % literal,
        b'[{"bt": %s, "n": "temp", "v": 1}]' % literal,
        b'[{"n": %s, "v": 1}]' % text,
        b'[{"n": "temp", "v": 1, "n": %s}]' % text,
    ]
    return draw(st.sampled_from(templates))


@st.composite
def _named(draw: st.DrawFn) -> bytes:
    """Items whose device id or metric names are hostile (SQL, huge, odd Unicode)."""
    name = draw(_names)
    if draw(st.booleans()):
        name = name * draw(st.sampled_from([1, 100, _MEGABYTE // max(1, len(name))]))
    where = draw(st.sampled_from(["metric", "device_id", "senml", "value", "ts"]))
    if where == "metric":
        return _render({"values": {name: 1.0}})
    if where == "device_id":
        return _render({"device_id": name, "values": {"temp": 1.0}})
    if where == "senml":
        return _render([{"bn": "dev/", "n": name, "v": 1.0}])
    if where == "value":
        return _render({"values": {"temp": name}})
    return _render({"ts": name, "values": {"temp": 1.0}})


@st.composite
def _nested(draw: st.DrawFn) -> bytes:
    """Deep nesting, up to 100,000 levels, closed or not."""
    depth = draw(st.sampled_from([64, 300, 5_000, 100_000]))
    opener = draw(st.sampled_from(["[", '{"values":', '{"a":', '[{"v":']))
    closed = draw(st.booleans())
    closer = "".join("]" if c == "[" else "}" for c in opener if c in "[{")[::-1]
    return (opener * depth + "1" + (closer * depth if closed else "")).encode()


@st.composite
def _batches(draw: st.DrawFn) -> bytes:
    """Many items at once, around the default limit of 10,000 per message."""
    count = draw(st.sampled_from([0, 1, 9_999, 10_001, 30_000]))
    item = draw(st.sampled_from([b'{"values":{"t":1}}', b"{}", b"1", b'{"n":"t","v":1}']))
    return b"[" + b",".join([item] * count) + b"]"


def hostile_bodies() -> st.SearchStrategy[bytes]:
    """Return request bodies of every hostile kind above (not gzipped)."""
    return st.one_of(
        st.binary(max_size=200),
        _documents.map(_render),
        _mutated(),
        _spliced(),
        _named(),
        _nested(),
        _batches(),
    )


@dataclass(frozen=True)
class HostileRequest:
    """A body as sent: its content type and whether it is gzip-encoded."""

    body: bytes
    content_type: str
    gzipped: bool = False

    @property
    def headers(self) -> dict[str, str]:
        """Content headers of the request (the caller adds Authorization)."""
        headers = {"Content-Type": self.content_type}
        if self.gzipped:
            headers["Content-Encoding"] = "gzip"
        return headers


@functools.cache
def _gzip_bomb(size: int) -> bytes:
    """A few kilobytes that inflate to ``size`` bytes of a valid, empty JSON array."""
    return gzip.compress(b"[" + b" " * size + b"]", compresslevel=9)


@st.composite
def _requests(draw: st.DrawFn) -> HostileRequest:
    # Weights by repetition: hypothesis draws small integer ranges far from uniformly.
    kind = draw(st.sampled_from(["plain"] * 45 + ["gzip"] * 4 + ["bomb"]))
    if kind == "bomb":
        size = draw(st.sampled_from([2_000_000, 20_000_000]))
        return HostileRequest(_gzip_bomb(size), "application/json", gzipped=True)
    body = draw(hostile_bodies())
    content_type = draw(
        st.sampled_from(["application/json"] * 5 + ["application/senml+json"] * 4 + ["odd"])
    )
    if content_type == "odd":
        content_type = draw(st.sampled_from(["text/plain", "multipart/form-data", ""]))
    gzipped = kind == "gzip"
    return HostileRequest(gzip.compress(body) if gzipped else body, content_type, gzipped)


def hostile_requests() -> st.SearchStrategy[HostileRequest]:
    """Return HTTP requests: hostile bodies, some gzipped, a few bombs, odd content types."""
    return _requests()


def check_parsed(parsed: Parsed) -> None:
    """Assert that a parser outcome is well formed: every refusal has a documented reason."""
    for reject in parsed.rejects:
        assert reject.reason.value in REASONS
        assert 0 < len(reject.detail) <= 200, reject.detail
        assert reject.index == -1 or 0 <= reject.index < parsed.total
    for item in parsed.items:
        assert item.ts.tzinfo is UTC
        assert item.values or item.typed
        assert all(math.isfinite(value) for value in item.values.values())
        for value in (item.typed or {}).values():
            assert isinstance(value, bool) or len(value.encode()) <= MAX_TEXT_BYTES


def check_answer(status: int, answer: Any) -> str:
    """Assert that an intake answer is one the contract allows; return a label to count.

    200 carries per-item results whose reasons are documented; 4xx carries a documented
    error code and a detail saying what was wrong. Never 5xx.
    """
    assert status < 500, (status, answer)
    assert isinstance(answer, dict), answer
    if status == 200:
        assert set(answer) == {"accepted", "duplicates", "rejected"}, answer
        for reject in answer["rejected"]:
            assert reject["reason"] in REASONS, reject
            assert reject["detail"], reject
        reasons = sorted({reject["reason"] for reject in answer["rejected"]})
        return "200:" + (",".join(reasons) if reasons else "ok")
    assert status in (400, 401, 408, 413, 415, 429), (status, answer)
    assert answer["error"] in HTTP_ERROR_CODES, answer
    assert answer["detail"], answer
    return f"{status}:{answer['error']}"


def parse_both(body: bytes, device_id: str = "fuzz-1") -> list[Parsed]:
    """Parse ``body`` as wire format v1 and as SenML, received now."""
    received = datetime.now(UTC)
    return [parse_payload(body, fmt, device_id, received) for fmt in Format]

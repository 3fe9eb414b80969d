"""Property tests of ingest.wire: robustness, exact round trips, SenML resolution."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.wire import (
    DEVICE_ID_PATTERN,
    METRIC_NAME_PATTERN,
    Format,
    Item,
    Parsed,
    Reason,
    Reject,
    parse_payload,
    v1,
)
from ingest.wire.base import DEFAULT_LIMITS, MAX_TEXT_BYTES, UNIT_PATTERN, clock_at

DEVICE = "pump-17"
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
SKEW = timedelta(seconds=300)
HOSTILE_NAMES = [
    "x'; DROP TABLE readings;--",
    "robert'); DROP TABLE devices;--",
    "' OR '1'='1",
    "1; DELETE FROM readings",
    "temp\n",
    "temp\x00",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "${jndi:ldap://x/a}",
    "",
    "a" * 65,
    "températur",
    "\u202etemp",
]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["values", "ts", "seq", "device_id", "n", "v", "bn", "bt", "t", "x_"])
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=25,
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
metric_names = st.builds(
    str.__add__,
    st.sampled_from(LETTERS),
    st.text(alphabet=LETTERS + "0123456789_.:-", max_size=63),
)
finite_values = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.booleans()
)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Strings as devices send them: any character but NUL (unstorable) and lone surrogates.
texts = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]),
    max_size=70,
)
units = st.sampled_from(["Cel", "%RH", "m/s", "°C", "kWh", "1"])
past_or_now = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive by design
    max_value=(NOW + SKEW).replace(tzinfo=None),
    timezones=st.just(UTC),
)


def check_invariants(parsed: Parsed) -> None:
    """Every outcome is well-formed, whatever the input was."""
    for reject in parsed.rejects:
        assert isinstance(reject.reason, Reason)
        assert 0 < len(reject.detail) <= 200
        assert reject.index == -1 or 0 <= reject.index < parsed.total
    indices = [item.index for item in parsed.items] + [r.index for r in parsed.rejects]
    assert len(indices) == len(set(indices))
    if any(reject.index == -1 for reject in parsed.rejects):
        assert parsed.items == []
        assert len(parsed.rejects) == 1
    for item in parsed.items:
        assert 0 <= item.index < parsed.total
        assert item.ts.tzinfo is UTC
        assert _EPOCH <= item.ts <= NOW + SKEW
        assert item.values or item.typed
        for name, value in item.values.items():
            assert re.fullmatch(METRIC_NAME_PATTERN, name)
            assert type(value) is float
            assert math.isfinite(value)
        for name, typed in (item.typed or {}).items():
            assert re.fullmatch(METRIC_NAME_PATTERN, name)
            assert name not in item.values
            assert type(typed) is bool or (
                type(typed) is str and len(typed.encode()) <= MAX_TEXT_BYTES and "\x00" not in typed
            )
        for name, unit in (item.units or {}).items():
            assert name in item.values or name in (item.typed or {})
            assert re.fullmatch(UNIT_PATTERN, unit)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def both_formats(body: bytes) -> list[Parsed]:
    return [parse_payload(body, fmt, DEVICE, NOW) for fmt in Format]


# --- (1) any bytes -------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    for parsed in both_formats(body):
        check_invariants(parsed)


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_never_raises(document: object) -> None:
    body = json.dumps(document).encode()
    parsed_v1, parsed_senml = both_formats(body)
    check_invariants(parsed_v1)
    check_invariants(parsed_senml)
    if not any(reject.index == -1 for reject in parsed_v1.rejects):
        # v1 has no base-only records: every item is accounted for exactly once.
        assert len(parsed_v1.items) + len(parsed_v1.rejects) == parsed_v1.total


@settings(max_examples=150)
@given(json_values, st.integers(min_value=0, max_value=20), st.data())
def test_json_with_mutations_never_raises(document: object, cut: int, data: st.DataObject) -> None:
    body = json.dumps(document).encode()
    position = data.draw(st.integers(min_value=0, max_value=len(body)))
    noise = data.draw(st.sampled_from([b"", b"\xff", b"NaN", b"[", b"}", b'"', b"\\u", b"1e999"]))
    mutated = body[:position] + noise + body[position + cut :]
    for parsed in both_formats(mutated):
        check_invariants(parsed)


# --- (2) valid v1 batches round-trip exactly -----------------------------------------------


@dataclass
class Reading:
    wire: dict[str, Any]
    expected: Item


@st.composite
def readings(draw: st.DrawFn, index: int) -> Reading:
    values = draw(st.dictionaries(metric_names, finite_values | texts, min_size=1, max_size=6))
    wire: dict[str, Any] = {"values": values}
    given_units = draw(st.dictionaries(st.sampled_from(sorted(values)), units, max_size=2))
    if given_units:
        wire["units"] = given_units
    ts = NOW
    from_server = True
    style = draw(st.sampled_from(["absent", "rfc3339", "zulu", "epoch"]))
    if style != "absent":
        ts = draw(past_or_now)
        from_server = False
        if style == "rfc3339":
            wire["ts"] = ts.astimezone(draw(offsets)).isoformat()
        elif style == "zulu":
            wire["ts"] = ts.isoformat().replace("+00:00", "Z")
        else:
            wire["ts"] = ts.timestamp()
    seq = draw(st.none() | st.integers(min_value=0, max_value=2**63 - 1))
    if seq is not None:
        wire["seq"] = seq
    if draw(st.booleans()):
        wire["device_id"] = DEVICE
    if draw(st.booleans()):
        wire["firmware"] = draw(json_scalars)
    numbers = {n: float(v) for n, v in values.items() if not isinstance(v, bool | str)}
    typed = {n: v for n, v in values.items() if isinstance(v, bool | str)}
    expected = Item(
        index,
        ts,
        seq,
        numbers,
        ts_from_server=from_server,
        typed=typed or None,
        units=given_units or None,
    )
    return Reading(wire, expected)


@st.composite
def batches(draw: st.DrawFn) -> list[Reading]:
    size = draw(st.integers(min_value=0, max_value=12))
    return [draw(readings(index)) for index in range(size)]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_valid_v1_batches_round_trip(batch: list[Reading]) -> None:
    body = json.dumps([reading.wire for reading in batch]).encode()
    parsed = parse_payload(body, Format.JSON, DEVICE, NOW)
    assert parsed == Parsed([reading.expected for reading in batch], [], len(batch))
    if batch:
        single = json.dumps(batch[0].wire, indent=1).encode()
        assert parse_payload(single, Format.JSON, DEVICE, NOW).items == [batch[0].expected]


@st.composite
def bad_items(draw: st.DrawFn) -> tuple[dict[str, Any], Reason]:
    good: dict[str, Any] = {"values": {"a": 1}}
    kind = draw(st.sampled_from(list(Reason)))
    item: dict[str, Any]
    if kind is Reason.INVALID_NAME:
        item = {"values": {draw(st.sampled_from(HOSTILE_NAMES)): 1}}
    elif kind is Reason.DEVICE_MISMATCH:
        item = {**good, "device_id": "pump-18"}
    elif kind is Reason.FUTURE_TIMESTAMP:
        item = {**good, "ts": (NOW + SKEW + timedelta(seconds=1)).isoformat()}
    elif kind is Reason.NON_FINITE:
        item = {"values": {"a": draw(st.sampled_from([math.nan, math.inf, -math.inf]))}}
    elif kind is Reason.TOO_LONG:
        item = {"values": {"a": draw(st.sampled_from(["x" * 257, "é" * 129, "€" * 86]))}}
    else:
        item = draw(
            st.sampled_from(
                [
                    {},
                    {"values": {}},
                    {"values": {"a": None}},
                    {"values": {"a": "x\x00"}},
                    {**good, "seq": -1},
                    {**good, "units": {"b": "Cel"}},
                    {**good, "units": {"a": ""}},
                ]
            )
        )
        kind = Reason.SCHEMA
    return item, kind


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.lists(bad_items(), min_size=1, max_size=4), st.randoms())
def test_bad_items_never_change_their_neighbours(
    batch: list[Reading], bad: list[tuple[dict[str, Any], Reason]], random: Any
) -> None:
    slots: list[Reading | tuple[dict[str, Any], Reason]] = [*batch, *bad]
    random.shuffle(slots)
    body = json.dumps([s.wire if isinstance(s, Reading) else s[0] for s in slots]).encode()
    parsed = parse_payload(body, Format.JSON, DEVICE, NOW)
    expected_items = [
        msgspec.structs.replace(s.expected, index=index)
        for index, s in enumerate(slots)
        if isinstance(s, Reading)
    ]
    assert parsed.items == expected_items
    assert {r.index: r.reason for r in parsed.rejects} == {
        index: s[1] for index, s in enumerate(slots) if not isinstance(s, Reading)
    }


# --- (2b) the fast path of v1 agrees with the full path ------------------------------------


# Times as devices write them (RFC 3339 in its spellings), and strings around its edges:
# what the pattern refuses, what datetime reads otherwise (fractions past microseconds,
# offsets without a colon), no offset, impossible dates.
def rfc3339(moment: datetime, sep: str, digits: int, zulu: str) -> str:
    text = moment.isoformat(sep=sep, timespec="microseconds")
    head, offset = text[:26], text[26:]
    fraction = head[19 : 20 + digits] if digits else ""
    return head[:19] + fraction + (zulu if offset == "+00:00" and zulu else offset)


valid_times = st.builds(
    rfc3339,
    st.datetimes(
        min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive by design
        max_value=(NOW + SKEW).replace(tzinfo=None),
        timezones=st.just(UTC) | offsets,
    ),
    st.sampled_from(["T", "t", " "]),
    st.integers(0, 6),
    st.sampled_from(["", "Z", "z"]),
)
edge_times = st.builds(
    "{}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}{}".format,
    st.sampled_from(["2026", "1970", "1969", "0000", "9999", "20261"]),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["T", "t", " ", "_"]),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
    st.sampled_from(["", ".5", ".", ".1234567", ".999999999", ",5"]),
    st.sampled_from(["Z", "+01:00", "", "+0100", "+01", "+24:00", "-23:59"]),
    st.sampled_from(["", "\n", " "]),
)
valid_values = st.dictionaries(
    metric_names,
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**53), 2**53)
    | st.booleans()
    | texts
    | st.sampled_from(["€" * 85, "€" * 86, "x" * 256, "x" * 257, "a\x00"]),
    min_size=1,
    max_size=3,
)
near_valid_sets = st.fixed_dictionaries(
    {
        "values": st.one_of(
            valid_values,
            valid_values,
            st.dictionaries(
                metric_names | st.sampled_from(["", "1x", "temp\n", "a" * 65]),
                finite_values | st.integers() | st.none() | st.text(max_size=3),
                min_size=1,
                max_size=3,
            ),
        )
    },
    optional={
        "ts": st.one_of(
            valid_times,
            valid_times,
            valid_times,
            edge_times,
            st.integers(0, 1_763_719_000),
            st.floats(0, NOW.timestamp()),
            st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False),
            st.none() | st.booleans(),
        ),
        "seq": st.one_of(
            st.integers(0, 2**63 - 1),
            st.integers(0, 2**63 - 1),
            st.integers(-(2**64), 2**64) | st.floats() | st.none() | st.booleans(),
        ),
        "device_id": st.sampled_from([DEVICE, DEVICE, DEVICE, "other", "", None]),
        "units": st.dictionaries(
            metric_names | st.just("a"), units | st.sampled_from(["", "x" * 33, "a\n"]), max_size=2
        ),
    },
)
edge_sets = st.one_of(
    near_valid_sets,
    near_valid_sets,
    near_valid_sets,
    st.fixed_dictionaries({}, optional={"x": json_values, "values": json_values}),
)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(edge_sets | st.lists(edge_sets, max_size=4), st.booleans())
def test_the_fast_path_agrees_with_the_full_path(document: object, gateway: bool) -> None:
    """Where the compiled fast path takes a message, the pydantic path reads it the same."""
    body = json.dumps(document).encode()
    clock = clock_at(NOW, SKEW.total_seconds())
    fast = v1._parse_v1_valid(body, DEVICE, clock, DEFAULT_LIMITS, gateway=gateway)
    if fast is not None:
        full = v1._parse_v1_checked(body, DEVICE, clock, DEFAULT_LIMITS, gateway=gateway)
        assert fast == full


@settings(max_examples=1000)
@given(valid_times | edge_times)
def test_the_fast_path_reads_times_as_the_full_path(ts: str) -> None:
    body = json.dumps({"ts": ts, "values": {"t": 1.0}}).encode()
    clock = clock_at(NOW, SKEW.total_seconds())
    fast = v1._parse_v1_valid(body, DEVICE, clock, DEFAULT_LIMITS)
    full = v1._parse_v1_checked(body, DEVICE, clock, DEFAULT_LIMITS)
    assert fast is None or fast == full
    if fast is None:  # only what the full path rejects, or reads otherwise than msgspec
        assert full.rejects


def test_the_fast_path_takes_ordinary_messages() -> None:
    """The fast path is not vacuous: the common shapes do take it."""
    clock = clock_at(NOW, SKEW.total_seconds())
    for document in (
        {"values": {"t": 21.5}},
        [{"ts": "2026-11-21T09:59:00.123456Z", "seq": 1, "values": {"t": 1, "h": 2.5}}],
        [{"ts": 1_763_719_000, "values": {"t": 1.0}, "device_id": DEVICE}],
        {"ts": "2026-11-21 10:59:00+01:00", "values": {"t": 1.0}},
        {"values": {"on": True, "mode": "auto", "t": 1}, "units": {"t": "Cel"}},
    ):
        body = json.dumps(document).encode()
        fast = v1._parse_v1_valid(body, DEVICE, clock, DEFAULT_LIMITS)
        assert fast is not None, document
        assert fast == v1._parse_v1_checked(body, DEVICE, clock, DEFAULT_LIMITS)


# --- (3) SenML packs resolve like a reference implementation -------------------------------


Resolved = tuple[str, float | bool | str, datetime, bool, str | None]


def reference_senml(pack: list[dict[str, Any]]) -> dict[int, Resolved]:
    """RFC 8428 resolution written plainly: index -> (metric, value, ts, relative, unit)."""
    out: dict[int, Resolved] = {}
    base_name, base_time, base_value, base_unit = "", 0.0, 0.0, None
    for index, record in enumerate(pack):
        base_name = record.get("bn", base_name)
        base_time = record.get("bt", base_time)
        base_value = record.get("bv", base_value)
        base_unit = record.get("bu", base_unit)
        if not any(label in record for label in ("n", "u", "v", "vb", "vs", "vd", "s", "t")):
            continue
        name = record.get("n", "")
        metric = name if base_name[-1:] in ("/", ":") else base_name + name
        when = base_time + record.get("t", 0)
        relative = when < 2**28
        ts = NOW + timedelta(seconds=when) if relative else datetime.fromtimestamp(when, UTC)
        typed = [record[label] for label in ("vb", "vs", "vd") if label in record]
        value = typed[0] if typed else base_value + record.get("v", 0)
        out[index] = (metric, value, ts, relative, record.get("u", base_unit))
    return out


def reference_reason(record: dict[str, Any], resolved: Resolved) -> Reason | None:
    metric, _, ts, _, _ = resolved
    kinds = [label for label in ("v", "vb", "vs", "vd") if label in record]
    if not re.fullmatch(METRIC_NAME_PATTERN, metric):
        return Reason.INVALID_NAME
    if not kinds and "s" in record:
        return Reason.UNSUPPORTED_VALUE
    if len(kinds) != 1:
        return Reason.SCHEMA
    if ts > NOW + SKEW:
        return Reason.FUTURE_TIMESTAMP
    return None


senml_base = st.fixed_dictionaries(
    {},
    optional={
        "bn": st.sampled_from(["pump-17/", "urn:dev:ow:10e2073a01080063:", "room", "", "9x/"]),
        "bt": st.sampled_from([0.0, -60.0, 1.7952e9, 1.276020076001e9, 2.0**28]),
        "bv": st.integers(min_value=-100, max_value=100).map(float),
        "bu": st.sampled_from(["Cel", "%RH"]),
    },
)
senml_regular = st.fixed_dictionaries(
    {},
    optional={
        "n": st.sampled_from(["temp", "humidity", "", "a.b", "1st", "x y", "/z"]),
        "t": st.integers(min_value=-1000, max_value=1000).map(float)
        | st.floats(min_value=-1e6, max_value=1e6),
        "u": st.just("Cel"),
    },
)
VALUE_FIELDS: list[dict[str, Any]] = [
    {},
    {"v": 1.5},
    {"v": -3.0},
    {"vb": True},
    {"vb": False},
    {"vs": "x"},
    {"vs": "Machine Room"},
    {"vd": "aGkgCg"},
    {"vs": "x", "vb": False},
    {"s": 10.0},
    {"v": 1.0, "s": 2.0},
    {"v": 2.0, "vb": True},
]
senml_value = st.sampled_from(VALUE_FIELDS)


@st.composite
def senml_packs(draw: st.DrawFn) -> list[dict[str, Any]]:
    pack = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        base: dict[str, Any] = draw(senml_base) if draw(st.booleans()) else {}
        record = {**base, **draw(senml_regular), **draw(senml_value)}
        pack.append(record)
    return pack


@settings(max_examples=300)
@given(senml_packs())
def test_senml_packs_resolve_like_the_reference(pack: list[dict[str, Any]]) -> None:
    parsed = parse_payload(json.dumps(pack).encode(), Format.SENML, DEVICE, NOW)
    check_invariants(parsed)
    assert parsed.total == len(pack)
    resolved = reference_senml(pack)
    got_items = {item.index: item for item in parsed.items}
    got_rejects = {reject.index: reject.reason for reject in parsed.rejects}
    for index, record in enumerate(pack):
        if index not in resolved:
            has_base = any(label in record for label in ("bn", "bt", "bv", "bu"))
            assert index not in got_items
            assert (index in got_rejects) is not has_base
            continue
        metric, value, ts, relative, unit = resolved[index]
        reason = reference_reason(record, resolved[index])
        if reason is None:
            numbers = {} if isinstance(value, bool | str) else {metric: value}
            typed = {metric: value} if isinstance(value, bool | str) else None
            assert got_items[index] == Item(
                index,
                ts,
                None,
                numbers,
                relative,
                typed=typed,
                units=None if unit is None else {metric: unit},
            )
        else:
            assert got_rejects[index] == reason, (record, parsed.rejects)


# --- (4) hostile JSON ----------------------------------------------------------------------


@settings(max_examples=40)
@given(st.integers(min_value=201, max_value=200_000), st.sampled_from(["[", '{"a":', '{"values":']))
def test_deep_nesting_is_malformed_json(depth: int, opener: str) -> None:
    body = (opener * depth).encode()
    for parsed in both_formats(body):
        assert parsed.rejects == [Reject(-1, Reason.MALFORMED_JSON, parsed.rejects[0].detail)]


@settings(max_examples=60)
@given(
    st.sampled_from(["values-key", "values-value", "ts", "device_id", "seq", "senml-n"]),
    st.integers(min_value=65, max_value=1_000_000),
)
def test_huge_strings_are_rejected_without_echo(where: str, size: int) -> None:
    huge = "Q" * size
    if where == "senml-n":
        parsed = parse_payload(
            json.dumps([{"n": huge, "v": 1}]).encode(), Format.SENML, DEVICE, NOW
        )
    else:
        item: dict[str, Any] = {"values": {"a": 1}}
        if where == "values-key":
            item["values"] = {huge: 1}
        elif where == "values-value":
            item["values"] = {"a": huge + "Q" * MAX_TEXT_BYTES}
        else:
            item[where] = huge
        parsed = parse_payload(json.dumps(item).encode(), Format.JSON, DEVICE, NOW)
    check_invariants(parsed)
    assert parsed.items == []
    assert "Q" * 41 not in parsed.rejects[0].detail


@settings(max_examples=100)
@given(
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e309", b"1" + b"0" * 400]),
    st.sampled_from(["v1-value", "v1-ts", "senml-v", "senml-t", "senml-bt", "senml-bv"]),
)
def test_non_finite_numbers_are_named(literal: bytes, where: str) -> None:
    field = where.split("-")[1]
    if where.startswith("v1"):
        body = b'{"values": {"ok": 1, "temp": ' + literal + b"}}"
        if field == "ts":
            body = b'{"values": {"ok": 1}, "ts": ' + literal + b"}"
        parsed = parse_payload(body, Format.JSON, DEVICE, NOW)
    else:
        record = b'{"n": "temp", "v": 1, "' + field.encode() + b'": ' + literal + b"}"
        parsed = parse_payload(b"[" + record + b"]", Format.SENML, DEVICE, NOW)
    reject = parsed.rejects[0]
    assert (parsed.items, reject.reason) == ([], Reason.NON_FINITE)
    assert ("temp" if field == "value" else field) in reject.detail


@settings(max_examples=100)
@given(st.sampled_from(HOSTILE_NAMES), st.sampled_from(["metric", "device_id", "senml"]))
def test_hostile_names_are_invalid_names(name: str, where: str) -> None:
    if where == "senml":
        body = json.dumps([{"bn": "dev/", "n": name, "v": 1}])
        parsed = parse_payload(body.encode(), Format.SENML, DEVICE, NOW)
        pattern = METRIC_NAME_PATTERN
    elif where == "metric":
        body = json.dumps({"values": {"ok": 1, name: 2}})
        parsed = parse_payload(body.encode(), Format.JSON, DEVICE, NOW)
        pattern = METRIC_NAME_PATTERN
    else:
        body = json.dumps({"values": {"ok": 1}, "device_id": name})
        parsed = parse_payload(body.encode(), Format.JSON, DEVICE, NOW)
        pattern = DEVICE_ID_PATTERN
    reject = parsed.rejects[0]
    assert (parsed.items, reject.index, reject.reason) == ([], 0, Reason.INVALID_NAME)
    assert pattern in reject.detail

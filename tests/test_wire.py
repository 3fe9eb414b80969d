"""Unit tests of ingest.wire: topics, wire format v1, SenML, reason codes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ingest.wire import (
    DEVICE_ID_PATTERN,
    METRIC_NAME_PATTERN,
    Format,
    Item,
    Limits,
    Parsed,
    Reason,
    Reject,
    parse_payload,
    parse_topic,
)

DEVICE = "pump-17"
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
SQL_NAME = "x'; DROP TABLE readings;--"
DEFAULT_LIMITS = Limits()


def v1(body: object, limits: Limits = DEFAULT_LIMITS) -> Parsed:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_payload(raw, Format.JSON, DEVICE, NOW, limits)


def senml(body: object, limits: Limits = DEFAULT_LIMITS) -> Parsed:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_payload(raw, Format.SENML, DEVICE, NOW, limits)


def only_item(parsed: Parsed) -> Item:
    assert parsed.rejects == []
    assert len(parsed.items) == 1
    return parsed.items[0]


def only_reject(parsed: Parsed) -> Reject:
    assert parsed.items == []
    assert len(parsed.rejects) == 1
    reject = parsed.rejects[0]
    assert 0 < len(reject.detail) <= 200
    return reject


def reasons(parsed: Parsed) -> dict[int, Reason]:
    return {reject.index: reject.reason for reject in parsed.rejects}


def ts_of(text: str) -> Item:
    return only_item(v1({"ts": text, "values": {"a": 1}}))


# --- topics --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("telemetry/pump-17", ("pump-17", Format.JSON)),
        ("telemetry/pump-17/senml", ("pump-17", Format.SENML)),
        ("telemetry/urn:dev:1.2_3", ("urn:dev:1.2_3", Format.JSON)),
        ("telemetry/7", ("7", Format.JSON)),
    ],
)
def test_topic_accepted(topic: str, expected: tuple[str, Format]) -> None:
    assert parse_topic(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "telemetry",
        "telemetry/pump-17/",
        "telemetry/pump-17/json",
        "telemetry/pump-17/senml/x",
        "Telemetry/pump-17",
        "/telemetry/pump-17",
        "$share/ingest/telemetry/pump-17",
        "commands/pump-17",
    ],
)
def test_topic_invalid(topic: str) -> None:
    reject = parse_topic(topic)
    assert isinstance(reject, Reject)
    assert (reject.index, reject.reason) == (-1, Reason.INVALID_TOPIC)


@pytest.mark.parametrize(
    "device_id", ["", "-pump", "pump 17", "a" * 65, "pump\n", "pümp", "+", "#", SQL_NAME]
)
def test_topic_with_invalid_device_id(device_id: str) -> None:
    reject = parse_topic(f"telemetry/{device_id}")
    assert isinstance(reject, Reject)
    assert (reject.index, reject.reason) == (-1, Reason.INVALID_NAME)
    assert DEVICE_ID_PATTERN in reject.detail


def test_topic_detail_is_bounded() -> None:
    reject = parse_topic("x" * 1_000_000)
    assert isinstance(reject, Reject)
    assert len(reject.detail) <= 200


# --- wire format v1: accepted --------------------------------------------------------------


def test_design_example() -> None:
    body = {
        "device_id": "pump-17",
        "ts": "2026-11-21T10:00:00.123Z",
        "seq": 42,
        "values": {"temperature": 21.5, "humidity": 40.1},
    }
    parsed = v1(body)
    assert parsed == Parsed(
        [
            Item(
                0,
                datetime(2026, 11, 21, 10, 0, 0, 123000, tzinfo=UTC),
                42,
                {"temperature": 21.5, "humidity": 40.1},
                ts_from_server=False,
            )
        ],
        [],
        1,
    )
    assert parsed.items[0].ts.tzinfo is UTC


def test_batch_keeps_indices_and_order() -> None:
    parsed = v1([{"values": {"a": i}, "seq": i} for i in range(5)])
    assert parsed.total == 5
    assert [(item.index, item.seq, item.values) for item in parsed.items] == [
        (i, i, {"a": float(i)}) for i in range(5)
    ]


def test_empty_batch_is_valid() -> None:
    assert v1([]) == Parsed([], [], 0)
    assert v1(b" \n[ ]\t") == Parsed([], [], 0)


def test_whitespace_before_batch() -> None:
    parsed = v1(b'\r\n\t [{"values": {"a": 1}}, {"values": {"b": 2}}]')
    assert parsed.total == 2
    assert len(parsed.items) == 2


def test_numbers_are_floats_and_booleans_and_strings_keep_their_type() -> None:
    item = only_item(
        v1({"values": {"i": 3, "f": 2.5, "t": True, "f0": False, "neg": -1e-300, "s": "on"}})
    )
    assert item.values == {"i": 3.0, "f": 2.5, "neg": -1e-300}
    assert all(type(value) is float for value in item.values.values())
    assert item.typed == {"t": True, "f0": False, "s": "on"}
    assert item.units is None


def test_all_numeric_items_carry_no_typed_values() -> None:
    item = only_item(v1({"values": {"a": 1, "b": 2.5}}))
    assert (item.typed, item.units, item.device_id) == (None, None, None)


def test_huge_but_finite_numbers_are_accepted() -> None:
    item = only_item(v1(b'{"values": {"a": 1e308, "b": 1' + b"0" * 300 + b"}}"))
    assert item.values == {"a": 1e308, "b": 1e300}


def test_absent_ts_uses_now() -> None:
    item = only_item(v1({"values": {"a": 1}}))
    assert (item.ts, item.ts_from_server, item.seq) == (NOW, True, None)


def test_now_in_another_zone_is_converted_to_utc() -> None:
    local_now = NOW.astimezone(timezone(timedelta(hours=-7)))
    parsed = parse_payload(b'{"values": {"a": 1}}', Format.JSON, DEVICE, local_now)
    assert parsed.items[0].ts == NOW
    assert parsed.items[0].ts.utcoffset() == timedelta(0)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_payload(b"{}", Format.JSON, DEVICE, NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T09:00:00Z", datetime(2026, 11, 21, 9, 0, tzinfo=UTC)),
        ("2026-11-21T14:30:00+05:30", datetime(2026, 11, 21, 9, 0, tzinfo=UTC)),
        ("2026-11-21T01:00:00-08:00", datetime(2026, 11, 21, 9, 0, tzinfo=UTC)),
        ("2026-11-21T09:00:00-00:00", datetime(2026, 11, 21, 9, 0, tzinfo=UTC)),
        ("2026-11-21t09:00:00z", datetime(2026, 11, 21, 9, 0, tzinfo=UTC)),
        ("2026-11-21 09:00:00Z", datetime(2026, 11, 21, 9, 0, tzinfo=UTC)),
        ("2026-11-21T09:00:00.5Z", datetime(2026, 11, 21, 9, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-21T09:00:00.123456789Z", datetime(2026, 11, 21, 9, 0, 0, 123456, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
        ("1970-01-01T01:00:00+01:00", datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_rfc3339_ts(text: str, expected: datetime) -> None:
    item = ts_of(text)
    assert item.ts == expected
    assert item.ts.tzinfo is UTC
    assert item.ts_from_server is False


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (b"1795255200", datetime(2026, 11, 21, 10, 0, tzinfo=UTC)),
        (b"1795255199.123456", datetime(2026, 11, 21, 9, 59, 59, 123456, tzinfo=UTC)),
        (b"1.7952552e9", datetime(2026, 11, 21, 10, 0, tzinfo=UTC)),
        (b"0", datetime(1970, 1, 1, tzinfo=UTC)),
        (b"0.000001", datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ],
)
def test_epoch_seconds_ts(number: bytes, expected: datetime) -> None:
    item = only_item(v1(b'{"values": {"a": 1}, "ts": ' + number + b"}"))
    assert (item.ts, item.ts_from_server) == (expected, False)


def test_future_skew_boundary() -> None:
    at_limit = (NOW + timedelta(seconds=300)).isoformat()
    assert ts_of(at_limit).ts == NOW + timedelta(seconds=300)
    strict = Limits(max_future_skew_s=0)
    assert only_reject(v1({"ts": NOW.timestamp() + 1, "values": {"a": 1}}, strict)).reason == (
        Reason.FUTURE_TIMESTAMP
    )


@pytest.mark.parametrize("seq", [0, 1, 2**63 - 1])
def test_seq_accepted(seq: int) -> None:
    assert only_item(v1({"seq": seq, "values": {"a": 1}})).seq == seq


def test_matching_device_id_is_accepted() -> None:
    assert only_item(v1({"device_id": DEVICE, "values": {"a": 1}})).values == {"a": 1.0}


def test_unknown_fields_are_ignored() -> None:
    body = {"values": {"a": 1}, "fw": "1.2.3", "extra": {"nested": [1, None, True]}, "n": None}
    assert only_item(v1(body)).values == {"a": 1.0}


@pytest.mark.parametrize(
    "name", ["a", "A", "z" * 64, "temp.c", "a:b", "a-b", "a_b", "x1", "Temp_2.avg:1m-x"]
)
def test_metric_names_accepted(name: str) -> None:
    assert only_item(v1({"values": {name: 1}})).values == {name: 1.0}


# --- wire format v1: rejected --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"{",
        b"[{]",
        b"nope",
        b'{"values": {"a": 1}} trailing',
        b'{"values": {"a": 1},}',
        b"{'values': {'a': 1}}",
        b'{"values": {"\xff": 1}}',
        b'{"values": {"a": 1}, "x": "\xc3\x28"}',
        b'{"values": {"a": 1}, "x": "\\ud800"}',
        b"\xef\xbb\xbf{}",
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"values": {"a": nan}}',
        b'{"values": {"a": 1' + b"0" * 4300 + b"}}",
    ],
)
def test_malformed_json(body: bytes) -> None:
    for parsed in (v1(body), senml(body)):
        assert parsed.total == 0
        reject = only_reject(parsed)
        assert (reject.index, reject.reason) == (-1, Reason.MALFORMED_JSON)


def test_malformed_json_detail_says_where() -> None:
    reject = only_reject(v1(b'{"values": }'))
    assert "line 1 column 12" in reject.detail


def test_deep_nesting_detail() -> None:
    reject = only_reject(v1(b"[" * 100_000))
    assert "recursion limit" in reject.detail


@pytest.mark.parametrize("body", [b"42", b'"values"', b"null", b"true", b"-1.5"])
def test_message_must_be_object_or_array(body: bytes) -> None:
    reject = only_reject(v1(body))
    assert (reject.index, reject.reason) == (-1, Reason.SCHEMA)
    assert v1(body).total == 0


@pytest.mark.parametrize(
    ("item", "detail"),
    [
        ({}, "values is required"),
        ({"values": {}}, "values must be"),
        ({"values": []}, "values must be"),
        ({"values": None}, "values must be"),
        ({"values": {"a": None}}, "values['a'] must be a number, a boolean or a string"),
        ({"values": {"a": [1]}}, "values['a'] must be a number"),
        ({"values": {"a": {"v": 1}}}, "values['a'] must be a number"),
        ({"values": {"a": 1}, "ts": "2026-11-21T09:00:00"}, "no UTC offset"),
        ({"values": {"a": 1}, "ts": "2026-11-21T09:00:00.5"}, "no UTC offset"),
        ({"values": {"a": 1}, "ts": "2026-11-21"}, "ts must be"),
        ({"values": {"a": 1}, "ts": "1795255200"}, "ts must be"),
        ({"values": {"a": 1}, "ts": "yesterday"}, "ts must be"),
        ({"values": {"a": 1}, "ts": "2026-11-21T09:00Z"}, "ts must be"),
        ({"values": {"a": 1}, "ts": "2026-W47-6T09:00:00Z"}, "ts must be"),
        ({"values": {"a": 1}, "ts": "2026-02-30T09:00:00Z"}, "not a valid date"),
        ({"values": {"a": 1}, "ts": "2026-11-21T24:00:00Z"}, "not a valid date"),
        ({"values": {"a": 1}, "ts": "2016-12-31T23:59:60Z"}, "not a valid date"),
        ({"values": {"a": 1}, "ts": "2026-11-21T09:00:00+24:00"}, "not a valid date"),
        ({"values": {"a": 1}, "ts": True}, "ts must be"),
        ({"values": {"a": 1}, "ts": None}, "ts must be"),
        ({"values": {"a": 1}, "ts": "1969-12-31T23:59:59Z"}, "before 1970"),
        ({"values": {"a": 1}, "ts": "0001-01-01T00:00:00+01:00"}, "before 1970"),
        ({"values": {"a": 1}, "ts": -1}, "before 1970"),
        ({"values": {"a": 1}, "ts": 1e12}, "after the year 9999"),
        ({"values": {"a": 1}, "ts": 1e300}, "after the year 9999"),
        ({"values": {"a": 1}, "seq": -1}, "seq must be"),
        ({"values": {"a": 1}, "seq": 1.5}, "seq must be"),
        ({"values": {"a": 1}, "seq": 1.0}, "seq must be"),
        ({"values": {"a": 1}, "seq": "3"}, "seq must be"),
        ({"values": {"a": 1}, "seq": True}, "seq must be"),
        ({"values": {"a": 1}, "seq": None}, "seq must be"),
        ({"values": {"a": 1}, "seq": 2**63}, "seq must be"),
        ({"values": {"a": 1}, "device_id": 17}, "device_id must be a string"),
        ({"values": {"a": 1}, "device_id": None}, "device_id must be a string"),
    ],
)
def test_schema(item: dict[str, object], detail: str) -> None:
    for parsed in (v1(item), v1([{"values": {"ok": 1}}, item])):
        assert parsed.items == [] or parsed.items[0].values == {"ok": 1.0}
        reject = parsed.rejects[0]
        assert reject.reason == Reason.SCHEMA
        assert detail in reject.detail
        assert len(reject.detail) <= 200


@pytest.mark.parametrize("item", [5, "x", None, [], [{"values": {"a": 1}}]])
def test_batch_entry_must_be_an_object(item: object) -> None:
    parsed = v1([{"values": {"a": 1}}, item])
    assert reasons(parsed) == {1: Reason.SCHEMA}
    assert "must be a JSON object" in parsed.rejects[0].detail


@pytest.mark.parametrize(
    "name", ["", "1abc", "_a", "-a", "a b", "a/b", "a" * 65, "temp\n", "tëmp", "a\x00", SQL_NAME]
)
def test_invalid_metric_name(name: str) -> None:
    reject = only_reject(v1({"values": {"ok": 1, name: 2}}))
    assert (reject.index, reject.reason) == (0, Reason.INVALID_NAME)
    assert METRIC_NAME_PATTERN in reject.detail
    assert repr(name[:40]) in reject.detail


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
def test_non_finite_value_rejects_the_item_and_names_the_metric(literal: bytes) -> None:
    body = b'[{"values": {"ok": 1, "temp": ' + literal + b'}}, {"values": {"ok": 2}}]'
    parsed = v1(body)
    assert reasons(parsed) == {0: Reason.NON_FINITE}
    assert "'temp'" in parsed.rejects[0].detail
    assert [item.values for item in parsed.items] == [{"ok": 2.0}]


def test_integer_too_large_for_a_float_is_non_finite() -> None:
    reject = only_reject(v1(b'{"values": {"big": 1' + b"0" * 400 + b"}}"))
    assert reject.reason == Reason.NON_FINITE
    reject = only_reject(v1(b'[{"values": {"big": 1' + b"0" * 400 + b"}}]"))
    assert reject.reason == Reason.NON_FINITE


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"1e400"])
def test_non_finite_ts(literal: bytes) -> None:
    reject = only_reject(v1(b'{"values": {"a": 1}, "ts": ' + literal + b"}"))
    assert reject.reason == Reason.NON_FINITE
    assert "ts" in reject.detail


def test_device_mismatch() -> None:
    parsed = v1([{"device_id": "pump-18", "values": {"a": 1}}, {"values": {"a": 2}}])
    assert reasons(parsed) == {0: Reason.DEVICE_MISMATCH}
    assert "'pump-18'" in parsed.rejects[0].detail
    assert [item.index for item in parsed.items] == [1]


def test_device_id_comparison_is_exact() -> None:
    assert only_reject(v1({"device_id": "PUMP-17", "values": {"a": 1}})).reason == (
        Reason.DEVICE_MISMATCH
    )


@pytest.mark.parametrize("claimed", [SQL_NAME, "", "pump 17", "p" * 65])
def test_invalid_device_id_in_payload(claimed: str) -> None:
    reject = only_reject(v1({"device_id": claimed, "values": {"a": 1}}))
    assert reject.reason == Reason.INVALID_NAME
    assert DEVICE_ID_PATTERN in reject.detail


def test_future_timestamp() -> None:
    ahead = NOW + timedelta(seconds=301)
    for ts in (ahead.isoformat(), ahead.timestamp(), "9999-12-31T23:59:59-01:00"):
        reject = only_reject(v1({"ts": ts, "values": {"a": 1}}))
        assert reject.reason == Reason.FUTURE_TIMESTAMP
        assert "ahead of the server clock" in reject.detail


def test_too_many_items() -> None:
    limits = Limits(max_items=2)
    assert len(v1([{"values": {"a": 1}}] * 2, limits).items) == 2
    for batch in ([{"values": {"a": 1}}] * 3, [{"values": {"a": 1}}, {}, 5]):
        parsed = v1(batch, limits)
        assert parsed.total == 3
        reject = only_reject(parsed)
        assert (reject.index, reject.reason) == (-1, Reason.TOO_LARGE)
        assert "3 items" in reject.detail


def test_partial_acceptance() -> None:
    batch: list[object] = [
        {"values": {"a": 1}, "ts": "2026-11-21T09:00:00Z"},
        {"values": {"a": float("nan")}},
        {"values": {"b": 2}, "seq": 7},
        {"values": {SQL_NAME: 1}},
        "not an object",
        {"values": {"c": 3}, "ts": (NOW + timedelta(hours=1)).isoformat()},
        {"values": {"d": True}, "device_id": "other"},
        {"values": {"e": 4}, "unknown": [1, 2]},
    ]
    parsed = v1(batch)
    assert parsed.total == 8
    assert [(item.index, item.values) for item in parsed.items] == [
        (0, {"a": 1.0}),
        (2, {"b": 2.0}),
        (7, {"e": 4.0}),
    ]
    assert reasons(parsed) == {
        1: Reason.NON_FINITE,
        3: Reason.INVALID_NAME,
        4: Reason.SCHEMA,
        5: Reason.FUTURE_TIMESTAMP,
        6: Reason.DEVICE_MISMATCH,
    }


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"device_id": "x", "values": {SQL_NAME: "NaN"}, "seq": -1}, Reason.DEVICE_MISMATCH),
        ({"values": {"a": "NaN", SQL_NAME: 1}, "seq": -1}, Reason.INVALID_NAME),
        ({"values": {"a": "x", "b": "NaN"}, "seq": -1}, Reason.NON_FINITE),
        ({"values": {"a": 1}, "seq": -1, "ts": "2099-01-01T00:00:00Z"}, Reason.SCHEMA),
    ],
)
def test_one_reject_per_item_with_the_first_reason(item: dict[str, object], reason: Reason) -> None:
    body = json.dumps(item).replace('"NaN"', "NaN").encode()
    assert only_reject(v1(body)).reason == reason


def test_details_never_echo_much_input() -> None:
    huge = "Q" * 1_000_000
    for item in (
        {"values": {huge: 1}},
        {"values": {"a": 1}, "ts": huge},
        {"values": {"a": 1}, "ts": "2026-11-21T09:00:00" + huge},
        {"values": {"a": 1}, "device_id": huge},
        {"values": {"a": huge}},
        {"values": {"a": 1}, "seq": huge},
    ):
        reject = only_reject(v1(item))
        assert "Q" * 41 not in reject.detail


# --- SenML ---------------------------------------------------------------------------------


def test_senml_rfc_example_single_datapoint() -> None:
    name = "urn:dev:ow:10e2073a01080063"
    item = only_item(senml([{"n": name, "u": "Cel", "v": 23.1}]))
    assert item == Item(0, NOW, None, {name: 23.1}, ts_from_server=True, units={name: "Cel"})


def test_senml_rfc_example_multiple_datapoints() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
        {"n": "current", "u": "A", "v": 1.2},
    ]
    parsed = senml(pack)
    assert [(item.index, item.values) for item in parsed.items] == [
        (0, {"voltage": 120.1}),
        (1, {"current": 1.2}),
    ]


def test_senml_rfc_example_base_time_and_relative_offsets() -> None:
    pack = [
        {
            "bn": "urn:dev:ow:10e2073a0108006:",
            "bt": 1.276020076001e09,
            "bu": "A",
            "bver": 5,
            "n": "voltage",
            "u": "V",
            "v": 120.1,
        },
        {"n": "current", "t": -5, "v": 1.2},
        {"n": "current", "t": -4, "v": 1.3},
        {"n": "current", "v": 1.7},
    ]
    parsed = senml(pack)
    base = datetime(2010, 6, 8, 18, 1, 16, 1000, tzinfo=UTC)
    assert parsed.rejects == []
    assert [(item.ts, item.values, item.ts_from_server) for item in parsed.items] == [
        (base, {"voltage": 120.1}, False),
        (base - timedelta(seconds=5), {"current": 1.2}, False),
        (base - timedelta(seconds=4), {"current": 1.3}, False),
        (base, {"current": 1.7}, False),
    ]


def test_senml_rfc_example_base_name_without_separator_is_the_metric() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 21.2},
        {"t": 10, "v": 21.3},
        {"t": 20, "v": 21.4},
    ]
    parsed = senml(pack)
    start = datetime(2011, 10, 31, 13, 24, 24, tzinfo=UTC)
    assert [(item.ts, item.values) for item in parsed.items] == [
        (start, {"urn:dev:ow:10e2073a01080063": 21.2}),
        (start + timedelta(seconds=10), {"urn:dev:ow:10e2073a01080063": 21.3}),
        (start + timedelta(seconds=20), {"urn:dev:ow:10e2073a01080063": 21.4}),
    ]


def test_senml_rfc_example_base_name_changes_midway() -> None:
    pack = [
        {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
        {"n": "humidity", "u": "%RH", "v": 30},
        {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
        {"n": "humidity", "u": "%RH", "v": 67},
    ]
    parsed = senml(pack)
    assert parsed.rejects == []
    assert [item.values for item in parsed.items] == [
        {"temperature": 25.2},
        {"humidity": 30.0},
        {"temperature": 12.3},
        {"humidity": 67.0},
    ]
    assert {item.ts for item in parsed.items} == {datetime(2011, 10, 31, 16, 27, 9, tzinfo=UTC)}


def test_senml_rfc_example_data_types() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
        {"n": "label", "vs": "Machine Room"},
        {"n": "open", "vb": False},
        {"n": "nfv-reader", "vd": "aGkgCg"},
    ]
    parsed = senml(pack)
    assert parsed.rejects == []
    assert [(item.index, item.values, item.typed) for item in parsed.items] == [
        (0, {"temp": 23.1}, None),
        (1, {}, {"label": "Machine Room"}),
        (2, {}, {"open": False}),
        (3, {}, {"nfv-reader": "aGkgCg"}),
    ]
    assert parsed.items[0].units == {"temp": "Cel"}


def test_senml_rfc_example_pure_base_record() -> None:
    pack = [
        {"bn": "urn:dev:ow:10e2073a01080063:"},
        {"n": "temp", "u": "Cel", "v": 23.1},
        {"n": "heat", "u": "/", "v": 1},
        {"n": "fan", "u": "/", "v": 0},
    ]
    parsed = senml(pack)
    assert parsed.total == 4
    assert parsed.rejects == []
    assert [(item.index, item.values) for item in parsed.items] == [
        (1, {"temp": 23.1}),
        (2, {"heat": 1.0}),
        (3, {"fan": 0.0}),
    ]


def test_senml_rfc_example_names_must_start_with_a_letter() -> None:
    pack = [{"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 1}, {"n": "x", "v": 2}]
    parsed = senml(pack)
    assert reasons(parsed) == {0: Reason.INVALID_NAME}
    assert parsed.items[0].values == {"x": 2.0}


def test_senml_base_name_is_not_compared_with_the_device() -> None:
    item = only_item(senml([{"bn": "some-other-device/", "n": "temp", "v": 1}]))
    assert item.values == {"temp": 1.0}


def test_senml_resolved_name_must_be_a_metric_name() -> None:
    parsed = senml(
        [
            {"bn": "pump-17", "n": "/temp", "v": 1},
            {"bn": "dev/", "n": SQL_NAME, "v": 1},
            {"bn": "dev/", "v": 1},
            {"v": 1},
        ]
    )
    assert reasons(parsed) == dict.fromkeys(range(4), Reason.INVALID_NAME)
    assert "metric name ''" in parsed.rejects[2].detail


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        (0, NOW),
        (-5, NOW - timedelta(seconds=5)),
        (-0.25, NOW - timedelta(milliseconds=250)),
        (300, NOW + timedelta(seconds=300)),
        (-1e9, NOW - timedelta(seconds=1e9)),
    ],
)
def test_senml_relative_time(t: float, expected: datetime) -> None:
    item = only_item(senml([{"n": "a", "t": t, "v": 1}]))
    assert (item.ts, item.ts_from_server) == (expected, True)
    item = only_item(senml([{"bt": t - 10, "n": "a", "t": 10, "v": 1}]))
    assert (item.ts, item.ts_from_server) == (expected, True)


def test_senml_absolute_time_from_two_to_the_28() -> None:
    item = only_item(senml([{"n": "a", "t": 2**28, "v": 1}]))
    assert (item.ts, item.ts_from_server) == (datetime(1978, 7, 4, 21, 24, 16, tzinfo=UTC), False)
    reject = only_reject(senml([{"n": "a", "t": 2**28 - 1, "v": 1}]))
    assert reject.reason == Reason.FUTURE_TIMESTAMP


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"n": "a", "t": 301, "v": 1}, Reason.FUTURE_TIMESTAMP),
        ({"n": "a", "t": NOW.timestamp() + 301, "v": 1}, Reason.FUTURE_TIMESTAMP),
        ({"n": "a", "t": -2e9, "v": 1}, Reason.SCHEMA),
        ({"n": "a", "t": 1e12, "v": 1}, Reason.SCHEMA),
        ({"bt": 1e308, "n": "a", "t": 1e308, "v": 1}, Reason.NON_FINITE),
    ],
)
def test_senml_time_out_of_range(record: dict[str, object], reason: Reason) -> None:
    assert only_reject(senml([record])).reason == reason


def test_senml_base_value_is_added_to_v_only() -> None:
    parsed = senml(
        [
            {"bn": "d/", "bv": 100, "n": "a", "v": 1.5},
            {"n": "b", "v": -100},
            {"n": "c", "vb": True},
            {"bv": 0, "n": "d", "v": 2},
        ]
    )
    assert [item.values or item.typed for item in parsed.items] == [
        {"a": 101.5},
        {"b": 0.0},
        {"c": True},
        {"d": 2.0},
    ]


def test_senml_value_overflowing_with_base_value_is_non_finite() -> None:
    assert only_reject(senml([{"bv": 1e308, "n": "a", "v": 1e308}])).reason == Reason.NON_FINITE


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_senml_non_finite(literal: bytes) -> None:
    for field in (b"v", b"t", b"bv", b"bt"):
        body = b'[{"n": "a", "v": 1, "' + field + b'": ' + literal + b"}]"
        assert only_reject(senml(body)).reason == Reason.NON_FINITE


def test_senml_sum() -> None:
    parsed = senml([{"n": "a", "s": 10}, {"n": "b", "v": 1, "s": 10}, {"bs": 5, "n": "c", "s": 1}])
    assert reasons(parsed) == {0: Reason.UNSUPPORTED_VALUE, 2: Reason.UNSUPPORTED_VALUE}
    assert parsed.items[0].values == {"b": 1.0}


@pytest.mark.parametrize(
    "record",
    [
        {"n": "a"},
        {"n": "a", "u": "Cel", "t": 0},
        {},
        {"unknown": 1},
        {"n": "a", "v": 1, "vb": True},
        {"n": "a", "v": 1, "vs": "x"},
    ],
)
def test_senml_record_needs_exactly_one_value(record: dict[str, object]) -> None:
    reject = only_reject(senml([{"bn": "d/"}, record]))
    assert (reject.index, reject.reason) == (1, Reason.SCHEMA)


def test_senml_units_update_time_and_unknown_fields_are_ignored() -> None:
    item = only_item(senml([{"bu": "Cel", "n": "a", "u": "K", "ut": 60, "x": {"y": 1}, "v": 1}]))
    assert item.values == {"a": 1.0}


def test_senml_must_understand_field() -> None:
    parsed = senml([{"n": "a", "v": 1, "foo_": 1}, {"bn": "d/", "bar_": "x"}, {"n": "b", "v": 2}])
    assert reasons(parsed) == {0: Reason.SCHEMA, 1: Reason.SCHEMA}
    assert "'foo_'" in parsed.rejects[0].detail
    assert parsed.items[0].values == {"b": 2.0}


def test_senml_version() -> None:
    parsed = senml(
        [
            {"bver": 10, "n": "a", "v": 1},
            {"bver": 11},
            {"n": "b", "v": 2},
            {"bver": 10, "n": "c", "v": 3},
            {"bver": 0, "n": "d", "v": 4},
        ]
    )
    assert reasons(parsed) == {1: Reason.SCHEMA, 2: Reason.SCHEMA, 4: Reason.SCHEMA}
    assert "version 11" in parsed.rejects[1].detail
    assert [item.values for item in parsed.items] == [{"a": 1.0}, {"c": 3.0}]


def test_senml_invalid_base_field_taints_only_the_records_that_use_it() -> None:
    parsed = senml(
        [
            {"bn": "d/", "bv": 10, "n": "a", "v": 1},
            {"bv": "ten", "n": "b", "v": 1},
            {"n": "c", "v": 1},
            {"n": "d", "vb": True},
            {"bn": 5},
            {"n": "e", "vb": True},
            {"bn": "d/", "bv": 0, "n": "f", "v": 1},
        ]
    )
    assert reasons(parsed) == {
        1: Reason.SCHEMA,
        2: Reason.SCHEMA,
        4: Reason.SCHEMA,
        5: Reason.SCHEMA,
    }
    assert "bv must be a number" in parsed.rejects[0].detail
    assert "invalid bv of record 1" in parsed.rejects[1].detail
    assert "invalid bn of record 4" in parsed.rejects[3].detail
    assert [(item.index, item.values or item.typed) for item in parsed.items] == [
        (0, {"a": 11.0}),
        (3, {"d": True}),
        (6, {"f": 1.0}),
    ]


def test_senml_valid_base_fields_of_a_rejected_record_still_apply() -> None:
    parsed = senml([{"bn": "d/", "bt": 2**28, "n": "a", "v": "x"}, {"n": "b", "v": 1}])
    assert reasons(parsed) == {0: Reason.SCHEMA}
    assert parsed.items[0].ts == datetime(1978, 7, 4, 21, 24, 16, tzinfo=UTC)
    assert parsed.items[0].values == {"b": 1.0}


@pytest.mark.parametrize(
    ("record", "detail"),
    [
        ({"n": 5, "v": 1}, "n must be a string"),
        ({"n": "a", "v": "1"}, "v must be a number"),
        ({"n": "a", "v": True}, "v must be a number"),
        ({"n": "a", "vb": 1}, "vb must be a boolean"),
        ({"n": "a", "v": 1, "t": "now"}, "t must be a number"),
        ({"n": "a", "v": 1, "u": 1}, "u must be a unit"),
        ({"n": "a", "v": 1, "u": ""}, "u must be a unit"),
        ({"n": "a", "v": 1, "bu": "x" * 33}, "bu must be a unit"),
        ({"n": "a", "vd": "a+b/"}, "vd is not base64 data"),
        ({"n": "a", "vs": 1}, "vs must be a string"),
        ({"bver": "10", "n": "a", "v": 1}, "bver must be a positive integer"),
        ({"n": "a", "v": None}, "v must be a number"),
    ],
)
def test_senml_mistyped_fields(record: dict[str, object], detail: str) -> None:
    reject = only_reject(senml([record]))
    assert reject.reason == Reason.SCHEMA
    assert detail in reject.detail


def test_senml_rejected_record_gets_its_most_specific_reason() -> None:
    parsed = senml(
        [
            {"n": SQL_NAME, "v": "x"},
            {"n": "a", "s": 1, "t": "x"},
            {"n": "a", "vs": "x" * 257, "t": "x"},
        ]
    )
    assert reasons(parsed) == {
        0: Reason.INVALID_NAME,
        1: Reason.UNSUPPORTED_VALUE,
        2: Reason.TOO_LONG,
    }


@pytest.mark.parametrize("body", [b"{}", b'{"n": "a", "v": 1}', b"42", b"null"])
def test_senml_pack_must_be_an_array(body: bytes) -> None:
    reject = only_reject(senml(body))
    assert (reject.index, reject.reason) == (-1, Reason.SCHEMA)


def test_senml_record_must_be_an_object() -> None:
    parsed = senml([{"n": "a", "v": 1}, [1], "x"])
    assert reasons(parsed) == {1: Reason.SCHEMA, 2: Reason.SCHEMA}
    assert parsed.total == 3


def test_senml_empty_pack() -> None:
    assert senml([]) == Parsed([], [], 0)


def test_senml_too_many_records() -> None:
    for pack in ([{"n": "a", "v": 1}] * 3, [{"n": "a", "v": 1}, {}, 5]):
        parsed = senml(pack, Limits(max_items=2))
        reject = only_reject(parsed)
        assert (reject.index, reject.reason, parsed.total) == (-1, Reason.TOO_LARGE, 3)

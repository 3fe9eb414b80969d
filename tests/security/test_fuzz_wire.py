"""Hostile bodies against the parsers (a CI sample; ``benchmarks/fuzz.py`` runs 100,000).

tests/test_wire_properties.py covers arbitrary bytes and JSON, deep nesting, huge strings,
non-finite numbers and hostile names one kind at a time; here they come mixed, and with
what it leaves out: invalid UTF-8, lone surrogates and duplicate keys.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from ingest.wire import Parsed, Reason
from tests.security.hostile import check_parsed, hostile_bodies, parse_both


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_bodies())
def test_every_hostile_body_gets_a_documented_reason(body: bytes) -> None:
    for parsed in parse_both(body):
        check_parsed(parsed)


@pytest.mark.parametrize(
    "body",
    [
        b'{"values": {"temp": "\xff"}}',
        b'{"values": {"\xc3\x28": 1}}',
        b'{"values": {"t\xed\xa0\x80": 1}}',  # a surrogate encoded in UTF-8
        b'{"values": {"temp\\ud800": 1}}',  # a lone high surrogate escape
        b'{"device_id": "\\udfff", "values": {"temp": 1}}',  # a lone low one
        b'[{"n": "temp\\udc00x", "v": 1}]',
    ],
)
def test_text_that_is_not_unicode_is_malformed_json_with_its_place(body: bytes) -> None:
    for parsed in parse_both(body):
        (reject,) = parsed.rejects
        assert (reject.index, reject.reason) == (-1, Reason.MALFORMED_JSON)
        assert "line 1 column" in reject.detail


@pytest.mark.parametrize("char", ["\U000820c8", "\x00", "\u202e", "'\"", "\\"])
@pytest.mark.parametrize("where", ["device_id", "metric", "senml"])
def test_details_stay_short_whatever_the_characters(char: str, where: str) -> None:
    # Found by benchmarks/fuzz.py: 40 characters that each escape to 10 made 400.
    name = char * 100
    body = {
        "device_id": {"device_id": name, "values": {"t": 1}},
        "metric": {"values": {name: 1}},
        "senml": [{"bn": "dev/", "n": name, "v": 1}],
    }[where]
    for parsed in parse_both(json.dumps(body).encode()):
        check_parsed(parsed)
        assert all(len(reject.detail) <= 120 for reject in parsed.rejects), parsed.rejects


def _outcome(parsed: Parsed) -> tuple[object, ...]:
    return (
        [(item.index, item.values) for item in parsed.items],
        [(reject.index, reject.reason) for reject in parsed.rejects],
    )


@pytest.mark.parametrize(
    ("body", "last_only"),
    [
        (b'{"values": {"a": 1}, "values": {"b": 2}}', {"values": {"b": 2}}),
        (b'{"values": {"a": "x"}, "values": {"b": 2}}', {"values": {"b": 2}}),
        (b'{"values": {"a": 1}, "values": {"b": "x"}}', {"values": {"b": "x"}}),
        (b'{"values": {"a": 1, "a": 2}}', {"values": {"a": 2}}),
        (
            b'{"device_id": "other", "device_id": "fuzz-1", "values": {"t": 1}}',
            {"device_id": "fuzz-1", "values": {"t": 1}},
        ),
        (
            b'{"device_id": "fuzz-1", "device_id": "other", "values": {"t": 1}}',
            {"device_id": "other", "values": {"t": 1}},
        ),
        (b'[{"n": "a", "n": "b", "v": 1}]', [{"n": "b", "v": 1}]),
        (b'[{"n": "a", "v": 1, "v": "x"}]', [{"n": "a", "v": "x"}]),
    ],
)
def test_duplicate_keys_mean_the_last_one_on_every_path(body: bytes, last_only: object) -> None:
    # The fast path (one validate_json) and the slow one (item by item) agree.
    want = parse_both(json.dumps(last_only).encode())
    assert [_outcome(p) for p in parse_both(body)] == [_outcome(p) for p in want]

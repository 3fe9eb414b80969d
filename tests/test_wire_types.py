"""Unit tests of ingest.wire's value types, units and gateway items (v1 and SenML)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.wire import Format, Parsed, Reason, Reject, parse_payload
from ingest.wire.attributes import parse_attributes
from ingest.wire.topics import parse_attributes_topic
from tests.test_wire import DEFAULT_LIMITS, DEVICE, NOW, only_item, only_reject, reasons, senml, v1

# --- value types, units, gateways ----------------------------------------------------------


def gateway_v1(body: object) -> Parsed:
    raw = json.dumps(body).encode()
    return parse_payload(raw, Format.JSON, DEVICE, NOW, DEFAULT_LIMITS, gateway=True)


def gateway_senml(body: object) -> Parsed:
    raw = json.dumps(body).encode()
    return parse_payload(raw, Format.SENML, DEVICE, NOW, DEFAULT_LIMITS, gateway=True)


@pytest.mark.parametrize(
    "text",
    ["x" * 256, "é" * 128, "€" * 85, "", "line\nbreak", "🙂" * 64],
)
def test_strings_up_to_256_bytes_are_accepted(text: str) -> None:
    assert only_item(v1({"values": {"s": text}})).typed == {"s": text}
    assert only_item(senml([{"n": "s", "vs": text}])).typed == {"s": text}


@pytest.mark.parametrize("text", ["x" * 257, "é" * 129, "€" * 86, "🙂" * 65])
def test_longer_strings_are_too_long(text: str) -> None:
    for parsed in (
        v1({"values": {"s": text}}),
        v1([{"values": {"a": 1}}, {"values": {"s": text}}]),
        senml([{"n": "s", "vs": text}]),
    ):
        reject = parsed.rejects[-1]
        assert reject.reason == Reason.TOO_LONG
        assert f"{len(text.encode())} bytes, over 256" in reject.detail
        assert text[:50] not in reject.detail


def test_senml_data_over_the_limit_is_too_long() -> None:
    assert only_reject(senml([{"n": "d", "vd": "A" * 260}])).reason == Reason.TOO_LONG


def test_nul_in_a_string_is_a_schema_error() -> None:
    reject = only_reject(v1({"values": {"s": "a\x00b"}}))
    assert (reject.reason, "NUL" in reject.detail) == (Reason.SCHEMA, True)


def test_v1_units_are_kept_for_their_metrics() -> None:
    item = only_item(v1({"values": {"t": 21.5, "on": True}, "units": {"t": "°C"}}))
    assert (item.values, item.typed, item.units) == ({"t": 21.5}, {"on": True}, {"t": "°C"})


@pytest.mark.parametrize(
    ("units", "detail"),
    [
        ({"x": "Cel"}, "units['x'] names no metric of values"),
        ({"t": ""}, "units['t'] must be a unit"),
        ({"t": "x" * 33}, "units['t'] must be a unit"),
        ({"t": "a\nb"}, "units['t'] must be a unit"),
        ({"t": 1}, "units['t'] must be a unit"),
        ([], "units must be an object"),
    ],
)
def test_bad_units_are_schema_errors(units: object, detail: str) -> None:
    reject = only_reject(v1({"values": {"t": 1}, "units": units}))
    assert reject.reason == Reason.SCHEMA
    assert detail in reject.detail


def test_senml_units_resolve_from_u_then_bu() -> None:
    parsed = senml(
        [
            {"bn": "d/", "bu": "Cel", "n": "a", "v": 1},
            {"n": "b", "u": "%RH", "v": 2},
            {"n": "c", "vb": True},
            {"bu": "m", "n": "d", "v": 3},
        ]
    )
    assert [item.units for item in parsed.items] == [
        {"a": "Cel"},
        {"b": "%RH"},
        {"c": "Cel"},
        {"d": "m"},
    ]


def test_a_gateway_names_its_children_in_v1_items() -> None:
    parsed = gateway_v1(
        [
            {"device_id": "ble-1", "values": {"t": 1}},
            {"device_id": DEVICE, "values": {"t": 2}},
            {"values": {"t": 3}},
            {"device_id": "bad id", "values": {"t": 4}},
        ]
    )
    assert [(item.index, item.device_id) for item in parsed.items] == [
        (0, "ble-1"),
        (1, None),
        (2, None),
    ]
    assert reasons(parsed) == {3: Reason.INVALID_NAME}


def test_a_device_that_is_no_gateway_cannot_name_another() -> None:
    assert only_reject(v1({"device_id": "ble-1", "values": {"t": 1}})).reason == (
        Reason.DEVICE_MISMATCH
    )
    item = only_item(senml([{"bn": "ble-1/", "n": "t", "v": 1}]))
    assert item.device_id is None


def test_a_gateway_names_its_children_in_senml_base_names() -> None:
    parsed = gateway_senml(
        [
            {"bn": "ble-1/", "n": "t", "v": 1},
            {"n": "on", "vb": True},
            {"bn": f"{DEVICE}/", "n": "t", "v": 2},
            {"bn": "room:", "n": "t", "v": 3},
            {"bn": "flat", "n": "t", "v": 4},
            {"bn": "bad id/", "n": "t", "v": 5},
        ]
    )
    assert [(item.index, item.device_id) for item in parsed.items] == [
        (0, "ble-1"),
        (1, "ble-1"),
        (2, None),
        (3, "room"),
        (4, None),
    ]
    assert reasons(parsed) == {5: Reason.INVALID_NAME}


# --- devices' reports about themselves -----------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("attributes/pump-17", "pump-17"),
        ("attributes/urn:dev:1", "urn:dev:1"),
        ("attributes/", Reason.INVALID_NAME),
        ("attributes/a/b", Reason.INVALID_NAME),
        ("attribute/pump-17", Reason.INVALID_TOPIC),
    ],
)
def test_attributes_topics(topic: str, expected: str | Reason) -> None:
    got = parse_attributes_topic(topic)
    assert (got.reason if isinstance(got, Reject) else got) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1]", Reason.SCHEMA),
        (b'"x"', Reason.SCHEMA),
        (b"{", Reason.MALFORMED_JSON),
        (b'{"a": "\\u0000"}', Reason.SCHEMA),
        (json.dumps({f"k{i}": i for i in range(65)}).encode(), Reason.SCHEMA),
        (b'{"a": "' + b"x" * 9000 + b'"}', Reason.TOO_LARGE),
    ],
)
def test_bad_attribute_reports_are_refused_whole(body: bytes, reason: Reason) -> None:
    refused = parse_attributes(body)
    assert isinstance(refused, Reject)
    assert (refused.index, refused.reason) == (-1, reason)
    assert 0 < len(refused.detail) <= 200


@settings(max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_an_attribute_report_is_a_json_object_or_a_reason(document: object) -> None:
    body = json.dumps(document).encode()
    outcome = parse_attributes(body)
    if isinstance(outcome, Reject):
        assert outcome.reason in {Reason.SCHEMA, Reason.TOO_LARGE, Reason.MALFORMED_JSON}
    else:
        assert isinstance(document, dict)
        assert json.loads(outcome) == document

"""Receipts' encoding: the fast paths give the bytes paho's and json's generic ones give."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.intake import answer
from ingest.mqtt import _CorrelationOnly
from ingest.receipts import receipt_body
from ingest.wire import Reason, Reject


@given(st.binary(max_size=65_535))
def test_correlation_data_packs_as_paho_packs_it(correlation: bytes) -> None:
    generic = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    generic.CorrelationData = correlation
    fast = _CorrelationOnly(correlation)
    assert fast.pack() == generic.pack()  # type: ignore[no-untyped-call]
    # What paho reads back (and prints in its debug log) is the same property.
    decoded = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    decoded.unpack(fast.pack())  # type: ignore[no-untyped-call]
    assert decoded.CorrelationData == correlation  # type: ignore[attr-defined]
    assert str(fast) == str(generic)


@given(
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.lists(
        st.builds(Reject, st.integers(-1, 1000), st.sampled_from(Reason), st.text(max_size=40)),
        max_size=5,
    ),
)
def test_a_receipt_body_is_the_http_answer(
    accepted: int, duplicates: int, rejects: list[Reject]
) -> None:
    assert json.loads(receipt_body(accepted, duplicates, rejects)) == answer(
        accepted, duplicates, rejects
    )

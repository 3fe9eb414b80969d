from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from ingest.wire import Format, Limits, parse_payload
from simulator.faults import FaultConfig, draw_skew_s, malformed
from simulator.messages import ReadingSet, build_message, ts_from_ms, ts_to_ms

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
NOW_MS = ts_to_ms(NOW)
FORMATS = {"json": Format.JSON, "senml": Format.SENML}


def _readings(count: int, start_ms: int = NOW_MS - 60_000) -> list[ReadingSet]:
    return [
        ReadingSet(i + 1, start_ms + i * 1001, {"temperature": 20.5 + i, "running": 1.0})
        for i in range(count)
    ]


def _rejects(payload: bytes, encoding: str) -> dict[str, int]:
    parsed = parse_payload(payload, FORMATS[encoding], "dev-1", NOW, Limits())
    out: dict[str, int] = {}
    for reject in parsed.rejects:
        out[reject.reason.value] = out.get(reject.reason.value, 0) + 1
    return out


@pytest.mark.parametrize("encoding", ["json", "senml"])
def test_messages_round_trip_through_the_ingest_parser_to_the_millisecond(encoding: str) -> None:
    readings = _readings(5, start_ms=NOW_MS - 3_600_123)
    message = build_message("dev-1", encoding, readings)  # type: ignore[arg-type]
    parsed = parse_payload(message.payload, FORMATS[encoding], "dev-1", NOW, Limits())
    assert not parsed.rejects
    got = {(m, ts_to_ms(item.ts), v) for item in parsed.items for m, v in item.values.items()}
    want = {(m, r.ts_ms, v) for r in readings for m, v in r.values.items()}
    assert got == want


@pytest.mark.parametrize("encoding", ["json", "senml"])
@pytest.mark.parametrize("seed", range(12))
def test_each_malformed_item_makes_exactly_the_reject_it_announces(
    encoding: str, seed: int
) -> None:
    bad = malformed(random.Random(seed), encoding, NOW_MS / 1000)  # type: ignore[arg-type]
    readings = [] if bad.whole else _readings(3)
    message = build_message("dev-1", encoding, readings, bad=bad)  # type: ignore[arg-type]
    assert _rejects(message.payload, encoding) == dict(message.rejects)
    assert message.whole_reject == bad.whole
    assert message.stored == tuple(readings)


@pytest.mark.parametrize("encoding", ["json", "senml"])
def test_readings_too_far_ahead_are_expected_rejects(encoding: str) -> None:
    ahead = _readings(2, start_ms=NOW_MS + 400_000)
    message = build_message("dev-1", encoding, _readings(2), rejected=ahead)  # type: ignore[arg-type]
    assert _rejects(message.payload, encoding) == dict(message.rejects)
    assert message.rejects["future_timestamp"] == (2 if encoding == "json" else 4)


def test_a_malformed_message_carries_no_readings() -> None:
    bad = next(b for s in range(50) if (b := malformed(random.Random(s), "json", 0.0)).whole)
    with pytest.raises(ValueError, match="no readings"):
        build_message("dev-1", "json", _readings(1), bad=bad)


def test_skews_avoid_the_edge_of_the_future_limit() -> None:
    config = FaultConfig(skew_share=1.0, skew_max_s=400.0, max_future_skew_s=300.0)
    rng = random.Random(1)
    skews = [draw_skew_s(rng, config) for _ in range(5_000)]
    assert all(abs(s - 300.0) > 30 for s in skews)
    assert any(s > 330 for s in skews)
    assert any(s < -300 for s in skews)


def test_skew_share_picks_that_share_of_devices() -> None:
    config = FaultConfig(skew_share=0.2)
    rng = random.Random(2)
    skewed = sum(1 for _ in range(10_000) if draw_skew_s(rng, config) != 0.0)
    assert 1_800 < skewed < 2_200


def test_fault_settings_out_of_range_are_named() -> None:
    problems = FaultConfig(duplicate_share=1.5, burst_rate=-1, burst_size=0).problems()
    assert len(problems) == 3
    assert "duplicate_share" in problems[0]


def test_ts_conversions_are_exact() -> None:
    assert ts_to_ms(ts_from_ms(1_795_255_200_123)) == 1_795_255_200_123

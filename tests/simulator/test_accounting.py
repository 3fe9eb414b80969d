from __future__ import annotations

from simulator.accounting import Ledger
from simulator.api_client import StoredRow
from simulator.messages import ReadingSet, build_message
from simulator.report import Report


def _ledger() -> Ledger:
    ledger = Ledger()
    ledger.add_device("a", 2)
    sets = [ReadingSet(i, 1_000 + i, {"x": 1.0, "y": 2.0}) for i in range(3)]
    acked = build_message("a", "json", sets[:2])
    ledger.sent("a", acked)
    ledger.acked("a", acked)
    ledger.sent("a", acked, duplicate=True)
    ledger.acked("a", acked)
    ledger.sent("a", build_message("a", "json", sets[2:]))
    return ledger


def _rows(*keys: tuple[str, int]) -> list[StoredRow]:
    return [StoredRow("a", metric, ts) for metric, ts in keys]


def test_counts_follow_first_copies() -> None:
    ledger = _ledger()
    assert ledger.messages_sent == 3
    assert ledger.duplicate_sends == 1
    assert ledger.messages_acked == 2
    assert ledger.readings_sent == 6
    assert ledger.readings_acked == 4
    assert (ledger.first_ts_ms, ledger.last_ts_ms) == (1_000, 1_002)


def test_everything_stored_once() -> None:
    rows = _rows(("x", 1000), ("y", 1000), ("x", 1001), ("y", 1001), ("x", 1002), ("y", 1002))
    result = _ledger().reconcile(rows)
    assert (result.stored, result.duplicates, result.lost, result.unexpected) == (6, 0, 0, 0)
    assert result.missing_unacked == 0


def test_missing_acked_is_lost_and_missing_unacked_is_not() -> None:
    result = _ledger().reconcile(_rows(("x", 1000), ("y", 1000), ("x", 1001)))
    assert result.lost == 1
    assert result.missing_unacked == 2
    assert result.stored == 3


def test_duplicates_and_strangers_are_counted() -> None:
    rows = [*_rows(("x", 1000), ("x", 1000), ("x", 999)), StoredRow("b", "x", 1000)]
    result = _ledger().reconcile(rows)
    assert result.duplicates == 1
    assert result.unexpected == 2


def _report(**changes: object) -> Report:
    values: dict[str, object] = {
        "devices": 2,
        "protocols": ["mqtt"],
        "duration_s": 10.0,
        "target_rate": 2.0,
        "elapsed_s": 10.1,
        "messages_sent": 20,
        "messages_acked": 20,
        "messages_refused": 0,
        "duplicate_sends": 1,
        "retries": 0,
        "readings_sent": 40,
        "readings_acked": 40,
        "readings_stored": 40,
        "duplicates_stored": 0,
        "lost": 0,
        "unexpected": 0,
        "unacked_missing": 0,
        "mistyped": 0,
        "rejected": 1,
        "rejected_expected": 1,
        "rejects_by_reason": {"schema": 1},
        "expected_by_reason": {"schema": 1},
        "throughput_readings_s": 4.0,
        "latency_ms": {"p50": 50.0, "p95": 80.0, "p99": None},
        "latency_samples": 3,
        "settle_s": 0.5,
    }
    return Report(**(values | changes))  # type: ignore[arg-type]


def test_a_clean_report_passes_and_renders() -> None:
    report = _report()
    assert report.passed
    table = report.to_table()
    assert "PASS" in table
    assert "n/a" in table
    assert '"passed": true' in report.to_json()


def test_loss_duplicates_and_reject_mismatch_fail() -> None:
    report = _report(lost=2, duplicates_stored=1, rejects_by_reason={"schema": 2}, rejected=2)
    assert not report.passed
    assert len(report.problems) == 3
    assert "FAIL" in report.to_table()


def test_values_must_come_back_as_the_type_they_were_sent_as() -> None:
    ledger = Ledger()
    ledger.add_device("p", 3, {"on": "boolean", "mode": "string"})
    message = build_message(
        "p", "json", [ReadingSet(0, 1_000, {"x": 1.0, "on": True, "mode": "auto"})]
    )
    ledger.sent("p", message)
    ledger.acked("p", message)
    right = [StoredRow("p", "x", 1_000, 1.0), StoredRow("p", "on", 1_000, value=True)]
    good = ledger.reconcile([*right, StoredRow("p", "mode", 1_000, "auto")])
    assert (good.stored, good.lost, good.mistyped) == (3, 0, 0)
    # A boolean stored as 1 and a string stored as a number are both counted.
    wrong = [StoredRow("p", "x", 1_000, 1.0), StoredRow("p", "on", 1_000, 1.0)]
    bad = ledger.reconcile([*wrong, StoredRow("p", "mode", 1_000, 3.0)])
    assert (bad.stored, bad.mistyped) == (3, 2)


def test_mistyped_readings_fail_the_report() -> None:
    report = _report(mistyped=2)
    assert not report.passed
    assert any("another type" in problem for problem in report.problems)

"""Hostile input at volume: generated bodies against the parsers and the HTTP intake.

The strategies are the fuzz tests' (tests/security/hostile.py): random bytes, mutated
JSON, deep nesting, megabyte strings, NaN and Infinity, invalid UTF-8, lone surrogates,
duplicate keys, SQL-looking names, oversized batches, gzip bombs, odd content types.
``--parser-inputs`` bodies go through both parsers in this process; ``--http-inputs``
requests go to a real ingest process on a scratch database. Every outcome is checked as in
the tests and counted; the JSON line has the counts by outcome, the 5xx and exception
counts (both must be 0) and the memory of this process and of the ingest worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import hypothesis
import psutil
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from benchmarks.common import database_server, default_path, scratch_database
from tests.security.hostile import (
    HostileRequest,
    check_answer,
    check_parsed,
    hostile_bodies,
    hostile_requests,
    parse_both,
)
from tests.security.servers import register, request
from tests.support.processes import ServiceProcess, http_only_ingest_env

_MB = 1024 * 1024
_SAMPLE_S = 0.2
_CHUNK = 2_000
T = TypeVar("T")


def _drive(
    strategy: st.SearchStrategy[T], count: int, seed: int, test: Callable[[T], None]
) -> None:
    """Call ``test`` on ``count`` generated values, a chunk of them per hypothesis run.

    One run keeps what it generated until it ends, so one run of 100,000 would grow by
    gigabytes; chunks keep the memory figure about the code under test.
    """
    for chunk, start in enumerate(range(0, count, _CHUNK)):
        # Generation only, no shrinking or example database: a failure is counted, not hunted.
        @settings(
            max_examples=min(_CHUNK, count - start),
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.seed(seed * 1_000_003 + chunk)
        @given(strategy)
        def run(value: T) -> None:
            test(value)

        run()


class Tally:
    """Outcomes by label, failures with their first examples."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.failures = 0
        self.server_errors = 0
        self.examples: list[str] = []

    def fail(self, what: str) -> None:
        """Count a broken invariant; keep the first few for the report."""
        self.failures += 1
        if len(self.examples) < 5:
            self.examples.append(what[-1500:])


def fuzz_parsers(count: int, seed: int) -> tuple[Tally, float]:
    """Parse ``count`` hostile bodies as v1 and SenML; return the tally and the seconds."""
    tally = Tally()

    def check(body: bytes) -> None:
        try:
            for fmt, parsed in zip(("v1", "senml"), parse_both(body), strict=True):
                check_parsed(parsed)
                whole = next((r for r in parsed.rejects if r.index < 0), None)
                if whole is not None:
                    tally.outcomes[f"{fmt}:{whole.reason.value}"] += 1
                else:
                    kinds = sorted({r.reason.value for r in parsed.rejects}) or ["ok"]
                    tally.outcomes[f"{fmt}:items:{','.join(kinds)}"] += 1
        except Exception:  # noqa: BLE001  (counted and reported: that is the benchmark)
            tally.fail(f"{body[:200]!r}: {traceback.format_exc()}")

    started = time.perf_counter()
    _drive(hostile_bodies(), count, seed, check)
    return tally, time.perf_counter() - started


class RssSampler:
    """Peak resident memory of a process (and its children) sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.first = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        """Resident bytes of the process tree now."""
        try:
            tree = [self.process, *self.process.children(recursive=True)]
            return sum(p.memory_info().rss for p in tree)
        except psutil.Error:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_S):
            self.peak = max(self.peak, self.rss())

    def stop(self) -> dict[str, float]:
        """Stop sampling; return start, end, peak and peak growth in MiB."""
        self._stop.set()
        self._thread.join()
        return {
            "start_mb": round(self.first / _MB, 1),
            "end_mb": round(self.rss() / _MB, 1),
            "peak_mb": round(self.peak / _MB, 1),
            "growth_mb": round((self.peak - self.first) / _MB, 1),
        }


def fuzz_http(url: str, token: str, count: int, seed: int) -> Tally:
    """Send ``count`` hostile requests to ``url`` and check every answer."""
    tally = Tally()
    auth = {"Authorization": f"Bearer {token}"}

    def check(hostile: HostileRequest) -> None:
        try:
            status, answer = request(
                url, "POST", "/v1/telemetry", hostile.body, auth | hostile.headers
            )
        except OSError as exc:
            tally.fail(f"{hostile.body[:200]!r}: connection failed: {exc}")
            return
        if status >= 500:
            tally.server_errors += 1
        try:
            tally.outcomes[check_answer(status, answer)] += 1
        except AssertionError:
            tally.fail(f"{hostile.body[:200]!r} -> {status} {str(answer)[:500]}")

    _drive(hostile_requests(), count, seed, check)
    return tally


def main() -> int:
    """Run both parts and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parser-inputs", type=int, default=95_000)
    parser.add_argument("--http-inputs", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1, help="same seed, same inputs")
    args = parser.parse_args()

    own = RssSampler(psutil.Process().pid)
    parsers, parse_s = fuzz_parsers(args.parser_inputs, args.seed)
    own_memory = own.stop()

    with (
        database_server() as admin_url,
        scratch_database(admin_url, default_path(admin_url)) as db_url,
        tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp,
    ):
        token = register(db_url, "fuzz-1")
        with ServiceProcess(
            "ingest", http_only_ingest_env(db_url), Path(tmp) / "ingest.log"
        ) as ingest:
            assert ingest.child is not None
            server = RssSampler(ingest.child.pid)
            started = time.perf_counter()
            http = fuzz_http(ingest.url, token, args.http_inputs, args.seed)
            http_s = time.perf_counter() - started
            server_memory = server.stop()
            alive = request(ingest.url, "GET", "/healthz")[0] == 200

    parser_inputs = sum(parsers.outcomes.values()) // 2 + parsers.failures
    http_inputs = sum(http.outcomes.values()) + http.failures
    print(
        json.dumps(
            {
                "benchmark": "fuzz",
                "inputs": parser_inputs + http_inputs,
                "parser_inputs": parser_inputs,
                "http_inputs": http_inputs,
                "http_5xx": http.server_errors,
                "exceptions": parsers.failures,
                "http_contract_violations": http.failures,
                "server_alive_after": alive,
                "parser_inputs_per_s": round(parser_inputs / parse_s),
                "http_requests_per_s": round(http_inputs / http_s),
                "parser_process_rss": own_memory,
                "ingest_rss": server_memory,
                "parser_outcomes": dict(parsers.outcomes.most_common()),
                "http_outcomes": dict(http.outcomes.most_common()),
                "failure_examples": parsers.examples + http.examples,
            }
        )
    )
    ok = parsers.failures == http.failures == http.server_errors == 0 and alive
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

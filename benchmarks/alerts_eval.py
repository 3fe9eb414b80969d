"""Alert evaluation: time of one cycle of 1,000 rules over 10,000 devices, per storage path.

The fleet reports four metrics every 30 s for the last 20 minutes (through the batch
writer, so ``latest_readings`` and ``last_seen`` are what the ingest makes of them); one
device in a hundred runs hot, one in two hundred has gone silent. The rules mix the three
kinds (threshold on avg/max/min/last over 1, 5 or 15 minutes; no data; offline) and the
three scopes (one device, a site of 100 devices by metadata, the whole fleet) as
``--mix`` says. Each run is one evaluation at the same ``now`` on the service's code path
(``ingest.alerts.evaluate``): the first writes the transitions into firing, the rest find
the same alerts still firing and write nothing, as a steady fleet does. The same is timed
with a quarter and a half of the rules enabled, to show how the cost grows.

One JSON line per storage path. Reads ``DATABASE_URL`` (a role that may create databases);
without it, starts a private PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import TupleRow

from benchmarks.common import database_server, scratch_database, storage_paths
from ingest import maintenance
from ingest.alerts import EvaluationContext, evaluate, prepare
from ingest.records import DeviceUpdate, ReadingSet
from ingest.writer import BatchWriter

Mode = Literal["plain", "timescale"]
Conn = psycopg.AsyncConnection[TupleRow]

METRICS = ("temperature", "humidity", "pressure", "voltage")
SITE_SIZE = 100
HISTORY = timedelta(minutes=20)
STEP = timedelta(seconds=30)
INTERVAL_S = 15.0
# How the rules are spread over the kinds and the scopes (fractions of --rules).
KINDS = {"threshold": 0.6, "no_data": 0.2, "offline": 0.2}
DEFAULT_MIX = "device=0.4,site=0.58,fleet=0.02"

_INSERT_DEVICES = """
INSERT INTO devices (device_id, metadata, expected_interval_s)
SELECT 'dev-' || lpad(g::text, 5, '0'),
       jsonb_build_object('site', 'site-' || (g / %(site_size)s)::text), 30
FROM generate_series(0, %(devices)s - 1) g
"""
_INSERT_RULE = """
INSERT INTO alert_rules (name, kind, severity, device_id, selector, metric, agg, window_s,
                         op, threshold, clear_threshold, for_s, factor, renotify_s)
VALUES (%(name)s, %(kind)s, 'warning', %(device_id)s, %(selector)s, %(metric)s, %(agg)s,
        %(window_s)s, %(op)s, %(threshold)s, %(clear_threshold)s, %(for_s)s, %(factor)s, 0)
"""
_ENABLE_FIRST = "UPDATE alert_rules SET enabled = (rule_id <= %s)"
_PAIRS = """
SELECT count(*) FROM alert_rules r JOIN devices d
  ON d.device_id = r.device_id OR d.metadata @> r.selector
  OR (r.device_id IS NULL AND r.selector IS NULL)
WHERE r.enabled
"""


def _mix(text: str) -> dict[str, float]:
    parts = dict(part.split("=", 1) for part in text.split(","))
    shares = {scope: float(parts.get(scope, "0")) for scope in ("device", "site", "fleet")}
    if set(parts) - set(shares) or abs(sum(shares.values()) - 1) > 1e-9:
        raise argparse.ArgumentTypeError("--mix: device=, site=, fleet= shares adding up to 1")
    return shares


def _value(device: int, metric: int, step: int) -> float:
    """20 to 30; a device in a hundred runs hot (over 90) on its first metric."""
    if device % 100 == 7 and metric == 0:
        return 95.0 + step % 3
    return 20.0 + (device * 7 + metric * 3 + step) % 100 / 10


async def load(url: str, mode: Mode, devices: int, now: datetime) -> None:
    """The fleet, its readings up to ``now`` and its rollups as the jobs would leave them."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if mode == "timescale":
            # The aggregates' own refresh jobs would compete with the timed evaluations.
            await conn.execute(
                "SELECT alter_job(job_id, scheduled => false)"
                " FROM timescaledb_information.jobs"
                " WHERE proc_name = 'policy_refresh_continuous_aggregate'"
            )
        await conn.execute(_INSERT_DEVICES, {"devices": devices, "site_size": SITE_SIZE})
    times = [now - HISTORY + (k + 1) * STEP for k in range(int(HISTORY / STEP))]
    async with BatchWriter(url, mode=mode, pool_min=2, pool_max=2) as writer:
        for first in range(1, devices + 1, 500):
            sets: list[ReadingSet] = []
            seen: list[DeviceUpdate] = []
            for key in range(first, min(first + 500, devices + 1)):
                # One device in two hundred went silent ten minutes ago.
                until = now - timedelta(minutes=10) if key % 200 == 3 else now
                heard = [t for t in times if t <= until]
                sets += [
                    (key, t, {m: _value(key, i, k) for i, m in enumerate(METRICS)})
                    for k, t in enumerate(heard)
                ]
                seen.append(DeviceUpdate(key, heard[-1]))
            await writer.write(sets, seen)
        await writer.flush_latest()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if mode == "plain":
            await maintenance.refresh_rollups(conn, now)
        else:
            await conn.execute(
                "CALL refresh_continuous_aggregate('readings_1m'::regclass, NULL, %s)",
                [now - timedelta(minutes=1)],
            )
        await conn.execute("VACUUM ANALYZE")


def rules(count: int, devices: int, mix: dict[str, float], seed: int) -> list[dict[str, Any]]:
    """``count`` rules over the kinds and the scopes, drawn with ``seed``."""
    rng = random.Random(seed)
    scopes = rng.choices(list(mix), weights=list(mix.values()), k=count)
    kinds = rng.choices(list(KINDS), weights=list(KINDS.values()), k=count)
    made = []
    for n, (scope, kind) in enumerate(zip(scopes, kinds, strict=True)):
        rule: dict[str, Any] = dict.fromkeys(
            ("device_id", "selector", "metric", "agg", "window_s", "op", "threshold",
             "clear_threshold", "factor"),
        )  # fmt: skip
        rule |= {"name": f"rule-{n}", "kind": kind, "for_s": 0}
        if scope == "device":
            rule["device_id"] = f"dev-{rng.randrange(devices):05d}"
        elif scope == "site":
            site = rng.randrange(max(1, devices // SITE_SIZE))
            rule["selector"] = json.dumps({"site": f"site-{site}"})
        if kind == "threshold":
            rule |= {
                "metric": rng.choice(METRICS),
                "agg": rng.choice(("avg", "max", "min", "last")),
                "window_s": rng.choice((60, 300, 900)),
                "op": ">",
                "threshold": 90.0,
                "clear_threshold": 85.0,
                "for_s": rng.choice((0, 60)),
            }
        elif kind == "no_data":
            rule |= {"metric": rng.choice((*METRICS, None)), "for_s": 300}
        else:
            rule["factor"] = 3.0
        made.append(rule)
    return made


async def _cycles(conn: Conn, now: datetime, context: EvaluationContext, runs: int) -> list[Any]:
    return [await evaluate(conn, now, context) for _ in range(runs)]


async def bench(
    url: str, mode: Mode, devices: int, count: int, *, mix: dict[str, float], runs: int
) -> dict[str, Any]:
    """Load, then time ``runs`` evaluations with all the rules and with fewer."""
    now = datetime.now(UTC).replace(microsecond=0)
    started = asyncio.get_running_loop().time()
    await load(url, mode, devices, now)
    load_s = asyncio.get_running_loop().time() - started
    context = EvaluationContext(mode, 60, "http://127.0.0.1:8000", "benchmark")
    result: dict[str, Any] = {
        "benchmark": "alerts_eval",
        "path": mode,
        "devices": devices,
        "rules": count,
        "mix": mix,
        "interval_s": INTERVAL_S,
        "load_s": round(load_s, 1),
    }
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await prepare(conn)
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT_RULE, rules(count, devices, mix, seed=19))
        scaling = []
        for enabled in sorted({max(1, count // 4), max(1, count // 2), count}):
            await conn.execute(_ENABLE_FIRST, [enabled])
            await conn.execute("TRUNCATE alert_states, alert_events")
            pairs = (await (await conn.execute(_PAIRS)).fetchone() or (0,))[0]
            first, *steady = await _cycles(conn, now, context, runs + 1)
            times = [round(e.seconds, 3) for e in steady]
            scaling.append(
                {
                    "rules": enabled,
                    "pairs": pairs,
                    "first_s": round(first.seconds, 3),
                    "first_transitions": first.transitions,
                    "runs_s": times,
                    "median_s": round(statistics.median(times), 3),
                }
            )
            print(
                f"  {mode} {enabled} rules, {pairs:,} (rule, device) pairs: first"
                f" {first.seconds:.2f} s ({first.transitions} transitions), then {times}",
                file=sys.stderr,
            )
    full = scaling[-1]
    result |= {
        "pairs": full["pairs"],
        "firing": full["first_transitions"],
        "first_s": full["first_s"],
        "runs_s": full["runs_s"],
        "median_s": full["median_s"],
        "share_of_interval": round(full["median_s"] / INTERVAL_S, 3),
        "scaling": scaling,
        "targets_met": full["median_s"] <= INTERVAL_S / 3 and full["first_s"] <= INTERVAL_S / 3,
    }
    return result


def main() -> int:
    """Run the benchmark on each storage path available."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000, help="devices in the fleet")
    parser.add_argument("--rules", type=int, default=1_000, help="alert rules")
    parser.add_argument("--mix", type=_mix, default=_mix(DEFAULT_MIX), help="rule scopes")
    parser.add_argument("--runs", type=int, default=5, help="timed steady evaluations")
    parser.add_argument("--path", choices=["plain", "timescale", "all"], default="all")
    args = parser.parse_args()
    with database_server() as admin_url:
        for mode in storage_paths(admin_url, args.path):
            with scratch_database(admin_url, mode) as url:
                line = asyncio.run(
                    bench(url, mode, args.devices, args.rules, mix=args.mix, runs=args.runs)
                )
                print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

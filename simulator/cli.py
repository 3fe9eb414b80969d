"""Command line of ``python -m simulator``: ``run``, ``load`` and ``demo``.

``run`` keeps a fleet sending, ``load`` tests the platform and reports, ``demo`` runs the
whole platform on this machine with a fleet sending.

Exit codes: 0 done (``load``: passed), 1 error (one line on stderr), 2 usage,
3 ``load`` found lost, duplicated or unexpectedly rejected readings, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import get_args

from core.settings import MqttProtocol
from simulator import __version__
from simulator.accounting import Ledger
from simulator.api_client import QueryApi
from simulator.demo import Broker, DemoConfig, clean, run_demo
from simulator.driver_mqtt import ReceiptMode
from simulator.errors import ConfigError, SimulatorError
from simulator.faults import FaultConfig
from simulator.fleet import Fleet, parse_protocols
from simulator.load import run_load
from simulator.profiles import PROFILES
from simulator.progress import status_line
from simulator.runner import Endpoints, RunConfig, run_fleet

__all__ = ["build_parser", "main"]

EXIT_FAILED = 3


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share is between 0 and 1, not {text}")
    return value


def _add_common(
    cmd: argparse.ArgumentParser, env: Mapping[str, str], duration: float | None
) -> None:
    where = cmd.add_argument_group("platform")
    where.add_argument(
        "--api-url", default=env.get("API_URL", "http://127.0.0.1:8000"), help="query API (API_URL)"
    )
    where.add_argument(
        "--api-key",
        default=env.get("API_ADMIN_KEY"),
        help="admin API key (default: API_ADMIN_KEY); registers devices, reads rejects",
    )
    where.add_argument(
        "--ingest-url",
        default=env.get("INGEST_URL", "http://127.0.0.1:8001"),
        help="ingest HTTP endpoint (INGEST_URL)",
    )
    where.add_argument(
        "--mqtt-url",
        default=env.get("MQTT_URL", "mqtt://127.0.0.1:1883"),
        help="broker, mqtt://[user:pass@]host:port or mqtts:// (MQTT_URL)",
    )
    where.add_argument(
        "--mqtt-protocol",
        choices=get_args(MqttProtocol),
        default="5",
        help="MQTT version of the devices: 3.1.1 for brokers without MQTT 5, such as amqtt"
        " (%(default)s)",
    )
    where.add_argument(
        "--receipts",
        choices=get_args(ReceiptMode),
        default="auto",
        help="count an MQTT message as acknowledged on its commit receipt: auto (where the"
        " platform announces receipts), on, or off (on the broker's PUBACK) (%(default)s)",
    )
    fleet = cmd.add_argument_group("fleet")
    fleet.add_argument("--devices", type=int, default=100, help="virtual devices (%(default)s)")
    fleet.add_argument(
        "--rate",
        type=float,
        default=None,
        help="reading-sets per second across the fleet (default: one per device per second)",
    )
    fleet.add_argument(
        "--per-message", type=int, default=1, help="reading-sets per message (%(default)s)"
    )
    fleet.add_argument(
        "--duration",
        type=float,
        default=duration,
        help="seconds to run" + (" (%(default)s)" if duration else " (default: until Ctrl-C)"),
    )
    fleet.add_argument(
        "--jitter", type=float, default=0.1, help="per-tick interval jitter, a share (%(default)s)"
    )
    fleet.add_argument(
        "--protocols",
        default="mqtt,http",
        help="mqtt, http, senml (SenML over both), senml-mqtt, senml-http; devices take"
        " them in turn (%(default)s)",
    )
    fleet.add_argument(
        "--profiles",
        default=",".join(PROFILES),
        help="device profiles, taken in turn (%(default)s)",
    )
    fleet.add_argument("--prefix", default="sim", help="device id prefix (%(default)s)")
    fleet.add_argument("--fleet", type=Path, help="fleet file (JSON) to resume and keep tokens in")
    fleet.add_argument("--seed", type=int, help="random seed, for a repeatable run")
    fleet.add_argument(
        "--anomaly-rate", type=float, default=0.001, help="anomalies per sample (%(default)s)"
    )
    fleet.add_argument(
        "--devices-per-connection",
        type=int,
        default=200,
        help="MQTT devices sharing one broker connection (%(default)s)",
    )
    fleet.add_argument(
        "--http-connections", type=int, default=64, help="HTTP connection pool (%(default)s)"
    )
    fleet.add_argument(
        "--drain-s", type=float, default=30.0, help="longest wait for the last acks (%(default)s)"
    )
    fleet.add_argument("--quiet", action="store_true", help="no live status line")
    faults = cmd.add_argument_group("faults")
    for flag, helptext in (
        ("--duplicate-share", "messages sent twice"),
        ("--malformed-share", "messages with a malformed item, or a malformed message"),
        ("--late-share", "reading-sets held back and sent late, out of order"),
        ("--skew-share", "devices with a skewed clock"),
        ("--offline-share", "devices that go offline now and then and return with a backlog"),
    ):
        faults.add_argument(flag, type=_share, default=0.0, help=f"share of {helptext} (0)")
    faults.add_argument(
        "--late-max-s", type=float, default=10.0, help="longest hold-back (%(default)s)"
    )
    faults.add_argument(
        "--skew-max-s", type=float, default=120.0, help="largest clock skew (%(default)s)"
    )
    faults.add_argument(
        "--offline-s", type=float, default=10.0, help="mean offline spell (%(default)s)"
    )
    faults.add_argument(
        "--burst-rate", type=float, default=0.0, help="bursts per second, fleet-wide (0)"
    )
    faults.add_argument(
        "--burst-size", type=int, default=20, help="reading-sets per burst (%(default)s)"
    )
    faults.add_argument(
        "--max-future-skew-s",
        type=float,
        default=float(env.get("MAX_FUTURE_SKEW_S", "300")),
        help="the server's MAX_FUTURE_SKEW_S: readings further ahead are expected rejects",
    )


def build_parser(env: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Build the argument parser with one sub-parser per command."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Virtual device fleets and load tests (see docs/simulator.md).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    cmd = commands.add_parser(
        "run",
        help="run a virtual fleet",
        description="Run a virtual fleet until the duration ends.",
    )
    _add_common(cmd, env, None)
    cmd = commands.add_parser(
        "load",
        help="load test: drive a rate, verify through the API, report",
        description="Drive the fleet for the duration, verify every reading through the query"
        " API and report. Exit 3 when anything is lost, duplicated or rejected unexpectedly.",
    )
    _add_common(cmd, env, 60.0)
    cmd.add_argument(
        "--settle-s",
        type=float,
        default=60.0,
        help="longest wait for the ingest to store everything acknowledged (%(default)s)",
    )
    cmd.add_argument("--json", type=Path, help="also write the report as JSON to this file")
    _add_demo(commands)
    return parser


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "demo",
        help="run the whole platform here, with a simulated fleet (make demo)",
        description="Start a private PostgreSQL and MQTT broker, migrate, start the ingest and"
        " the query API, run a simulated fleet and print where to look. Ctrl-C stops it all;"
        " the data stays in --data-dir for the next run (see docs/quickstart.md).",
    )
    cmd.add_argument(
        "--data-dir", type=Path, default=Path("var"), help="where all data lives (%(default)s)"
    )
    cmd.add_argument("--clean", action="store_true", help="remove --data-dir and exit")
    cmd.add_argument("--devices", type=int, default=100, help="simulated devices (%(default)s)")
    cmd.add_argument("--workers", type=int, default=2, help="ingest worker processes (%(default)s)")
    cmd.add_argument("--api-port", type=int, default=8000, help="query API port (%(default)s)")
    cmd.add_argument("--ingest-port", type=int, default=8001, help="ingest HTTP port (%(default)s)")
    cmd.add_argument(
        "--pg-port", type=int, help="PostgreSQL port (default: the last one used, 55432, or free)"
    )
    cmd.add_argument(
        "--mqtt-port", type=int, help="MQTT port (default: the last one used, 11883, or free)"
    )
    cmd.add_argument(
        "--broker",
        choices=get_args(Broker),
        default="auto",
        help="MQTT broker: auto (Mosquitto where installed, else amqtt, else none), mosquitto,"
        " amqtt (pure Python, lower limits) or none (devices use HTTP only) (%(default)s)",
    )
    cmd.add_argument(
        "--no-mqtt",
        dest="broker",
        action="store_const",
        const="none",
        help="the same as --broker none",
    )
    cmd.add_argument(
        "--summary-s", type=float, default=5.0, help="seconds between summary lines (%(default)s)"
    )


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, Endpoints]:
    """Build the run settings from parsed arguments; ConfigError names what is wrong."""
    if not args.api_key:
        raise ConfigError("an admin API key is needed: --api-key or API_ADMIN_KEY")
    faults = FaultConfig(
        duplicate_share=args.duplicate_share,
        malformed_share=args.malformed_share,
        late_share=args.late_share,
        late_max_s=args.late_max_s,
        skew_share=args.skew_share,
        skew_max_s=args.skew_max_s,
        offline_share=args.offline_share,
        offline_s=args.offline_s,
        burst_rate=args.burst_rate,
        burst_size=args.burst_size,
        max_future_skew_s=args.max_future_skew_s,
    )
    config = RunConfig(
        devices=args.devices,
        rate=args.rate,
        per_message=args.per_message,
        duration_s=args.duration,
        jitter=args.jitter,
        protocols=parse_protocols(args.protocols),
        profiles=tuple(p.strip() for p in args.profiles.split(",") if p.strip()),
        prefix=args.prefix,
        seed=args.seed,
        anomaly_rate=args.anomaly_rate,
        drain_s=args.drain_s,
        devices_per_connection=args.devices_per_connection,
        mqtt_protocol=args.mqtt_protocol,
        receipts=args.receipts,
        http_connections=args.http_connections,
        faults=faults,
    )
    problems = config.problems()
    if problems:
        raise ConfigError("; ".join(problems))
    endpoints = Endpoints(args.api_url, args.api_key, args.ingest_url, args.mqtt_url)
    return config, endpoints


async def _run(args: argparse.Namespace) -> int:
    config, endpoints = config_from_args(args)
    ledger = Ledger()
    status = None if args.quiet else sys.stderr
    async with QueryApi(endpoints.api_url, endpoints.api_key) as api:
        result = await run_fleet(
            config, endpoints, Fleet.load(args.fleet), ledger, api=api, status=status
        )
    print(status_line(ledger, result.elapsed_s, config.duration_s))
    return 0


async def _demo(args: argparse.Namespace) -> int:
    if args.clean:
        print(clean(args.data_dir))
        return 0
    if args.devices < 1 or args.workers < 1 or args.summary_s <= 0:
        raise ConfigError("--devices and --workers must be at least 1, --summary-s positive")
    config = DemoConfig(
        data_dir=args.data_dir,
        devices=args.devices,
        workers=args.workers,
        api_port=args.api_port,
        ingest_port=args.ingest_port,
        pg_port=args.pg_port,
        mqtt_port=args.mqtt_port,
        broker=args.broker,
        summary_interval_s=args.summary_s,
    )
    return await run_demo(config)


async def _load(args: argparse.Namespace) -> int:
    config, endpoints = config_from_args(args)
    report = await run_load(
        config,
        endpoints,
        args.fleet,
        settle_s=args.settle_s,
        status=None if args.quiet else sys.stderr,
    )
    print(report.to_table())
    if args.json is not None:
        report.write_json(args.json)
    return 0 if report.passed else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` and return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        command = {"run": _run, "load": _load, "demo": _demo}[args.command]
        return asyncio.run(command(args))
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

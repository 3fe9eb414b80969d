"""Command line of ``python -m device_client`` (also installed as ``telemetry-device``).

Exit codes: 0 success, 1 runtime failure, 2 usage, 78 (EX_CONFIG) invalid configuration,
so that the systemd unit can stop restarting on a configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from device_client import __version__
from device_client.agent import Agent, build_sensors, build_transport
from device_client.config import AgentConfig, load_config
from device_client.errors import ConfigError, DeviceClientError
from device_client.status import format_status, spool_status

__all__ = ["EXIT_CONFIG", "build_parser", "main"]

log = logging.getLogger(__name__)

EXIT_CONFIG = 78
DEFAULT_CONFIG = "/etc/telemetry-device/config.toml"


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m device_client",
        description="Device agent: samples sensors and forwards readings, surviving outages.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    config_help = (
        "TOML configuration file (default: $TELEMETRY_CONFIG or %(default)s); "
        "TELEMETRY_* variables override its keys"
    )

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--config",
            "-c",
            default=os.environ.get("TELEMETRY_CONFIG", DEFAULT_CONFIG),
            help=config_help,
        )
        sub.add_argument(
            "--log-level",
            default="INFO",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="log verbosity (default: %(default)s)",
        )
        return sub

    add("run", "run the agent until SIGTERM/SIGINT")
    status = add("status", "show spool depth, oldest unsent reading, last send and last error")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    check = add("check-config", "validate the configuration and instantiate the sensors")
    check.add_argument("--sample", action="store_true", help="also read every sensor once")
    return parser


def _setup_logging(level: str) -> None:
    # journald stamps every line itself; a terminal user wants the time in the line.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def _run(config: AgentConfig) -> int:
    agent = Agent(config)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()
    return 0


def _check(config: AgentConfig, *, sample: bool) -> int:
    sensors = build_sensors(config)
    build_transport(config).close()
    print(
        f"config OK: device {config.device_id}, {config.transport} to {config.target_url}, "
        f"{len(sensors)} sensors, spool {config.spool.path} "
        f"(max {config.spool.max_rows} rows / {config.spool.max_bytes} bytes, "
        f"{config.spool.full_policy})"
    )
    if sample:
        for sensor in sensors:
            try:
                text = str(dict(sensor.read()))
            except DeviceClientError as exc:
                text = f"error: {exc}"
            print(f"  {sensor.spec.type:<16} {sensor.name:<20} {text}")
    for sensor in sensors:
        sensor.close()
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    if args.command == "run":
        return _run(config)
    if args.command == "status":
        print(format_status(config, spool_status(config), as_json=args.json))
        return 0
    return _check(config, sample=args.sample)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` and return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _setup_logging(args.log_level)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except DeviceClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a CLI user gets one line, not a traceback
        log.debug("unexpected failure", exc_info=True)
        print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

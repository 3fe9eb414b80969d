"""Write the dashboards' JSON, or check that the committed JSON is what the source makes.

Usage: ``python -m dashboards.build [--check] [--out DIR]`` (DIR defaults to this package's
directory, where Grafana's provisioning reads the files).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import DASHBOARDS
from dashboards.references import DashboardError, JsonObject, check_references

__all__ = ["filename", "main", "render", "to_json"]

HERE = Path(__file__).resolve().parent


def filename(dashboard: Dashboard) -> str:
    """Return the JSON file name: the uid without its ``telemetry-`` prefix."""
    if not dashboard.uid:
        raise DashboardError(f"dashboard {dashboard.title!r} has no uid")
    return dashboard.uid.removeprefix("telemetry-") + ".json"


def to_json(dashboard: Dashboard) -> JsonObject:
    """Render the dashboard with the SDK; fail if it names a missing datasource or variable."""
    model: JsonObject = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    check_references(model)
    return model


def render(dashboards: Sequence[Dashboard]) -> dict[str, str]:
    """Return each dashboard's file name and its JSON text (sorted keys, 2-space indent)."""
    return {
        filename(d): json.dumps(to_json(d), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for d in dashboards
    }


def _stale(out: Path, files: dict[str, str]) -> list[str]:
    stale = []
    for name, text in files.items():
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (1: an invalid dashboard or a stale file)."""
    parser = argparse.ArgumentParser(
        prog="python -m dashboards.build", description="Write or check the dashboards' JSON."
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    parser.add_argument("--out", type=Path, default=HERE, help="directory of the JSON files")
    args = parser.parse_args(argv)
    try:
        files = render(DASHBOARDS)
    except DashboardError as exc:
        sys.stderr.write(f"invalid dashboard: {exc}\n")
        return 1
    if args.check:
        stale = _stale(args.out, files)
        if stale:
            sys.stderr.write(
                f"out of date: {', '.join(stale)}; run `python -m dashboards.build` and "
                "commit the result\n"
            )
            return 1
        sys.stdout.write(f"{len(files)} dashboards up to date\n")
        return 0
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.out / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"cannot write the dashboards to {args.out}: {exc.strerror}\n")
        return 1
    sys.stdout.write(f"wrote {', '.join(files)} to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

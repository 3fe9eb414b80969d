"""The SDK build is the one for the Grafana that compose.yaml runs, and stays out of the servers.

grafana-foundation-sdk publishes one build per Grafana version, as ``<epoch>!<grafana>``
(e.g. ``1769699520!11.4.0``). When compose.yaml moves to another Grafana minor version, the
pin in pyproject.toml moves with it (and the JSON is regenerated), or this fails.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SDK = "grafana-foundation-sdk"
SERVER_PACKAGES = ("ingest", "api", "device_client", "simulator")


def _extras() -> dict[str, list[str]]:
    pyproject: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras: dict[str, list[str]] = pyproject["project"]["optional-dependencies"]
    return extras


def _grafana_of(sdk_version: str) -> tuple[int, int]:
    match = re.fullmatch(r"\d+!(\d+)\.(\d+)\.\d+", sdk_version)
    assert match, f"not an SDK build for a Grafana version: {sdk_version}"
    return int(match[1]), int(match[2])


def test_the_installed_sdk_is_the_pinned_build() -> None:
    (pin,) = _extras()["dashboards"]
    name, _, version = pin.partition("==")
    assert name == SDK, f"the dashboards extra pins exactly one build of {SDK}: {pin}"
    assert importlib.metadata.version(SDK) == version


def test_the_sdk_targets_the_grafana_that_compose_runs() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    image: str = compose["services"]["grafana"]["image"]
    match = re.fullmatch(r"grafana/grafana:(\d+)\.(\d+)\.\d+", image)
    assert match, f"compose.yaml's Grafana is not a pinned release: {image}"
    compose_grafana = int(match[1]), int(match[2])
    sdk_grafana = _grafana_of(importlib.metadata.version(SDK))
    assert sdk_grafana == compose_grafana, (
        f"compose.yaml runs {image} but {SDK} is the build for Grafana "
        f"{'.'.join(map(str, sdk_grafana))}: move both, then run python -m dashboards.build"
    )


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_server_packages_neither_import_nor_install_the_sdk() -> None:
    importers = [
        str(path.relative_to(ROOT))
        for package in SERVER_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imported(path) & {"grafana_foundation_sdk", "dashboards"}
    ]
    assert importers == []
    extras = _extras()
    for extra in ("server", "device"):
        assert not [r for r in extras[extra] if r.startswith(SDK)], extra

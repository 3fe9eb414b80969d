"""The device agent imports only the standard library and paho-mqtt.

import-linter (``make lint``) forbids our server packages and the server dependencies by
name; this test turns that into an allow-list, so a new dependency cannot slip in unnamed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import device_client

ALLOWED = frozenset({"device_client", "paho", "tomli"})  # tomli: Python 3.9 and 3.10 only


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_device_agent_needs_only_the_standard_library_and_paho() -> None:
    package = Path(device_client.__file__).parent
    foreign = {
        f"{path.relative_to(package.parent)}: {name}"
        for path in package.rglob("*.py")
        for name in _top_level_imports(path)
        if name not in ALLOWED and name not in sys.stdlib_module_names and name != "__future__"
    }
    assert not foreign, sorted(foreign)

"""What a dashboard names must exist: its datasources are provisioned, its variables defined.

Grafana loads a dashboard that names a missing datasource or variable, and the panel fails
(or quietly queries the default datasource) only when someone opens it. The build checks
the JSON that Grafana will load and fails instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from dashboards.datasources import DATASOURCES

__all__ = ["DashboardError", "JsonObject", "check_references"]

JsonObject = dict[str, Any]

# Grafana's variable syntax: $name, [[name]], [[name:format]], ${name}, ${name:format}.
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)(?:\.[^:^\}]+)?(?::[^\}]+)?\}")


class DashboardError(ValueError):
    """The dashboard names a datasource or a variable that Grafana would not find."""


def _nodes(node: object) -> Iterator[object]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _variables(part: JsonObject) -> set[str]:
    """Return the dashboard variables that ``part`` uses, in text or to repeat a panel."""
    names = {part["repeat"]} if "repeat" in part else set()
    for text in (n for n in _nodes(part) if isinstance(n, str)):
        names |= {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}
    # Names from __ on are Grafana's global variables and macros, never a dashboard's.
    return {n for n in names if not n.startswith("__")}


def _datasources(part: JsonObject) -> list[object]:
    return [n["datasource"] for n in _nodes(part) if isinstance(n, dict) and "datasource" in n]


def check_references(model: JsonObject) -> None:
    """Raise DashboardError if a panel, variable or annotation names a missing one."""
    uid = model.get("uid")
    variables = model["templating"].get("list", [])
    defined = {v["name"] for v in variables}
    provisioned = [d.to_json() for d in DATASOURCES]
    parts = [(f"{uid}: variable {v['name']!r}", v) for v in variables]
    parts += [(f"{uid}: panel {p.get('title')!r}", p) for p in model.get("panels", [])]
    annotations = model.get("annotations", {}).get("list", [])
    parts += [(f"{uid}: annotation {a.get('name')!r}", a) for a in annotations]
    for where, part in parts:
        if part.get("targets") and "datasource" not in part:
            # Grafana would send its queries to the default datasource, Prometheus.
            raise DashboardError(f"{where} has queries but names no datasource")
        for ref in _datasources(part):
            if ref not in provisioned:
                raise DashboardError(f"{where} names datasource {ref}, which is not provisioned")
        missing = sorted(_variables(part) - defined)
        if missing:
            raise DashboardError(f"{where} uses ${missing[0]}, which the dashboard does not define")

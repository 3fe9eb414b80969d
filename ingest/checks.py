"""The intake's checks of items that need more than the cache of numeric metrics.

An item goes here when it holds booleans or strings, carries units, names a gateway's
child, or names a metric this process has not seen yet. Each is placed on its device (the
sender, or a child attached to the sending gateway: else ``not_a_child``); what the catalog
does not know yet is learned in one round trip, the first reading of each metric and unit
fixing it; then every value must be of its metric's type (``type_mismatch``) and every unit
the device's unit of the metric (``unit_mismatch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.registry import DeviceRef
from ingest.catalog import Catalog, ValueType, value_type
from ingest.devices import DeviceDirectory, Miss
from ingest.wire import Item, Reason, Reject
from ingest.wire.base import quote

__all__ = ["Checked", "check_items"]


@dataclass(frozen=True, slots=True)
class Checked:
    """An item that passed, and the device it belongs to."""

    device_key: int
    item: Item


async def check_items(
    items: Sequence[Item], sender: DeviceRef, devices: DeviceDirectory, catalog: Catalog
) -> list[Checked | Reject]:
    """Check ``items`` of ``sender`` in order; each comes back checked or rejected."""
    placed = [await _place(item, sender, devices) for item in items]
    types: dict[str, ValueType] = {}
    units: dict[tuple[int, str], str] = {}
    for checked in placed:
        if isinstance(checked, Checked):
            _unknown(checked, catalog, types, units)
    if types or units:
        await catalog.learn(types, units)
    return [
        checked if isinstance(checked, Reject) else _conflict(checked, catalog) or checked
        for checked in placed
    ]


async def _place(item: Item, sender: DeviceRef, devices: DeviceDirectory) -> Checked | Reject:
    """Find the device an item is for: the sender, or the child of a gateway it names."""
    child_id = item.device_id
    if child_id is None:
        return Checked(sender.device_key, item)
    child = devices.cached_child(sender, child_id)
    if isinstance(child, Miss):
        child = await devices.child(sender, child_id)
    if child is None:
        detail = (
            f"device {quote(child_id)} is not a registered child of gateway"
            f" {sender.device_id!r} (attach it through the API)"
        )
        return Reject(item.index, Reason.NOT_A_CHILD, detail)
    return Checked(child.device_key, item)


def _unknown(
    checked: Checked,
    catalog: Catalog,
    types: dict[str, ValueType],
    units: dict[tuple[int, str], str],
) -> None:
    """Add what ``checked`` would fix and the catalog does not know yet (first one wins).

    An item refused for a type the catalog already knows fixes no unit.
    """
    item = checked.item
    conflict = False
    for name, value in (*item.values.items(), *(item.typed or {}).items()):
        known = catalog.type_of(name)
        if known is None:
            types.setdefault(name, value_type(value))
        elif known is not value_type(value):
            conflict = True
    if conflict:
        return
    for name, unit in (item.units or {}).items():
        if catalog.unit_of(checked.device_key, name) is None:
            units.setdefault((checked.device_key, name), unit)


def _conflict(checked: Checked, catalog: Catalog) -> Reject | None:
    """Reject an item with a value of another type or a unit other than the fixed one."""
    item = checked.item
    values: dict[str, float | bool | str] = {**item.values, **(item.typed or {})}
    for name, value in values.items():
        kind, fixed = value_type(value), catalog.type_of(name)
        if fixed is None:
            detail = f"no room for new metrics ({name}): the metric dictionary is full"
            return Reject(item.index, Reason.TOO_MANY_METRICS, detail)
        if kind is not fixed:
            detail = (
                f"metric {quote(name)} holds {fixed} values (its first reading fixed that),"
                f" not {kind}"
            )
            return Reject(item.index, Reason.TYPE_MISMATCH, detail)
    for name, unit in (item.units or {}).items():
        known = catalog.unit_of(checked.device_key, name)
        if unit != known:
            detail = (
                f"unit {quote(unit)} of metric {quote(name)} differs from"
                f" {quote(known or '')}, the unit this device gave it first"
            )
            return Reject(item.index, Reason.UNIT_MISMATCH, detail)
    return None

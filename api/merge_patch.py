"""JSON merge patch (RFC 7396): how ``PATCH /v1/devices/{id}`` changes a device's metadata."""

from __future__ import annotations

from typing import Any

__all__ = ["merge_patch"]


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply ``patch`` to ``target`` as RFC 7396 says; neither is changed.

    An object patch merges member by member, recursively: a member set to null is removed,
    any other replaces or merges into the member of that name. Anything but an object
    (an array, a string, a number) replaces the target whole.
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result

"""Tags: ``key:value`` filters over the operator's metadata (``tag=site:berlin``).

A device matches a tag when its metadata has that key with that string value; several
tags must all match. They become one JSON object for the containment operator
(``metadata @> '{"site": "berlin"}'``), which the registry's GIN index serves.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

__all__ = ["Tag", "Tags", "tag_filter"]


def _tag(value: str) -> str:
    key, colon, _ = value.partition(":")
    if not colon or not key:
        raise ValueError(f"{value!r} is not key:value (a metadata key, a colon, its value)")
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


Tag = Annotated[str, Field(max_length=200), AfterValidator(_tag)]
Tags = Annotated[
    list[Tag],
    Field(
        max_length=20,
        description="`key:value`: only devices whose metadata has that key with that (string)"
        " value; repeat for several, all must match",
    ),
]


def tag_filter(tags: list[str]) -> dict[str, str]:
    """Turn ``key:value`` tags into the metadata object they must all match.

    ValueError when a key is given twice with different values (nothing would match).
    """
    wanted: dict[str, str] = {}
    for tag in tags:
        key, _, value = tag.partition(":")
        if wanted.get(key, value) != value:
            raise ValueError(f"tag: {key} is given twice, as {wanted[key]!r} and {value!r}")
        wanted[key] = value
    return wanted

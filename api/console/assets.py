"""The console's files, read once from the package into memory and served by name.

A request names an asset by its path under ``static/``; only the files found there at
start-up exist, so no request reaches the file system and ``..`` leads nowhere. Each asset
carries its content type and an ETag (a digest of its bytes), so a browser revalidates
with a 304 instead of fetching it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

__all__ = ["Asset", "load_assets"]

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".md": "text/markdown",
    "": "text/plain",  # LICENSE
}


@dataclass(frozen=True, slots=True)
class Asset:
    """One file of the console: its bytes, content type and ETag."""

    body: bytes
    content_type: str
    etag: str


def _walk(folder: Traversable, prefix: str) -> dict[str, Traversable]:
    found: dict[str, Traversable] = {}
    for entry in folder.iterdir():
        if entry.is_dir():
            found |= _walk(entry, f"{prefix}{entry.name}/")
        else:
            found[prefix + entry.name] = entry
    return found


def load_assets() -> dict[str, Asset]:
    """Return every file under the package's ``static/`` by its relative path."""
    assets = {}
    for path, entry in _walk(resources.files("api.console") / "static", "").items():
        suffix = "." + path.rsplit(".", 1)[1] if "." in path.rsplit("/", 1)[-1] else ""
        if suffix not in _TYPES:
            continue  # nothing else belongs there; unknown kinds are not served
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[path] = Asset(body, _TYPES[suffix], etag)
    return assets

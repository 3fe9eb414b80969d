"""The console's files as served: headers, types, no inline script, no dangling imports.

What the console does in a browser is tests/browser; here is what can be checked without
one, on every machine.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from aiohttp.test_utils import TestClient

from api import endpoints
from api.console import CONTENT_SECURITY_POLICY
from api.console.assets import load_assets

ASSETS = load_assets()
_IMPORT = re.compile(r"""^\s*import\s[^"']*["']([^"']+)["'];""", re.MULTILINE)


@pytest.fixture
def storage_mode() -> str:
    """Static files: one storage path is enough."""
    return "plain"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:  # noqa: ARG002  (HTMLParser's signature)
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data.strip()


async def test_the_page_comes_with_a_strict_policy(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    r = await client.get("/")
    assert r.status == 200
    assert r.content_type == "text/html"
    assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "style-src 'self'" in CONTENT_SECURITY_POLICY
    assert "form-action 'none'" in CONTENT_SECURITY_POLICY
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    page = _Tags()
    page.feed(await r.text())
    # Every script is a file of this origin; no inline script, style or handler anywhere.
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert len(scripts) == 2
    assert all(str(attrs["src"]).startswith("/console/") for attrs in scripts)
    assert page.script_text == ""
    assert not [tag for tag, _ in page.tags if tag == "style"]
    for _, attrs in page.tags:
        assert not [a for a in attrs if a == "style" or a.startswith("on")]
        for name in ("src", "href"):
            link = attrs.get(name)
            if link and not link.startswith("#"):
                assert link.removeprefix("/console/") in ASSETS, link


async def test_assets_have_their_types_and_revalidate(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    for path, kind in (
        ("js/main.js", "text/javascript"),
        ("console.css", "text/css"),
        ("vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("vendor/uplot/LICENSE", "text/plain"),
        ("favicon.svg", "image/svg+xml"),
    ):
        r = await client.get(f"/console/{path}")
        assert r.status == 200, path
        assert r.content_type == kind
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-cache"
        again = await client.get(f"/console/{path}", headers={"If-None-Match": r.headers["ETag"]})
        assert again.status == 304
        assert await again.read() == b""


async def test_only_the_console_files_are_served(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    for path in (
        "/console/nope.js",
        "/console/%2e%2e/app.py",
        "/console/..%2F..%2Fapi%2Fapp.py",
        "/console/js",
        "/console/",
    ):
        r = await client.get(path)
        assert r.status == 404, path
        assert (await r.json())["error"] == "not_found"
    # The console reads the API like any client: its pages are not API operations.
    assert not [e for e in endpoints() if e.path == "/" or e.path.startswith("/console")]


def test_every_module_import_resolves_to_a_served_file() -> None:
    modules = [path for path in ASSETS if path.endswith(".js") and path.startswith("js/")]
    assert "js/main.js" in modules
    for path in modules:
        source = ASSETS[path].body.decode()
        assert "innerHTML" not in source, path  # text goes in as text (dom.js)
        folder = path.rsplit("/", 1)[0]
        for target in _IMPORT.findall(source):
            parts = folder.split("/")
            for piece in target.split("/"):
                if piece == "..":
                    parts.pop()
                elif piece != ".":
                    parts.append(piece)
            assert "/".join(parts) in ASSETS, f"{path} imports {target}"


def test_uplot_is_vendored_with_its_licence_and_version() -> None:
    notes = ASSETS["vendor/uplot/README.md"].body.decode()
    assert "uPlot 1.6.32" in notes
    assert "MIT" in notes
    assert b"MIT License" in ASSETS["vendor/uplot/LICENSE"].body
    assert ASSETS["vendor/uplot/uPlot.iife.min.js"].body.startswith(
        b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */"
    )

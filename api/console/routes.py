"""Routes of the web console: ``GET /`` (the page) and ``GET /console/{path}`` (its assets).

Every console response carries a strict Content-Security-Policy: scripts, styles and
connections from this origin only, no inline script or style, no framing, no form
submission (the key never leaves in a form or a URL). The console calls the API's
``/v1/...`` routes from the browser with the key the user typed, like any client; these
routes need no key, since the files hold no data.
"""

from __future__ import annotations

from aiohttp import web

from api.console.assets import Asset, load_assets

__all__ = ["CONTENT_SECURITY_POLICY", "add_console_routes"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load (a 304 when unchanged), so an upgrade shows at once.
    "Cache-Control": "no-cache",
}
_ASSETS = web.AppKey("console_assets", dict[str, Asset])


def _serve(request: web.Request, asset: Asset | None) -> web.Response:
    if asset is None:
        raise web.HTTPNotFound
    headers = _HEADERS | {"ETag": asset.etag}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
    )


async def console_index(request: web.Request) -> web.Response:
    """Serve the console's page."""
    return _serve(request, request.app[_ASSETS]["index.html"])


async def console_asset(request: web.Request) -> web.Response:
    """Serve one of the console's scripts, style sheets or images."""
    return _serve(request, request.app[_ASSETS].get(request.match_info["path"]))


def add_console_routes(app: web.Application) -> None:
    """Serve the console from ``app``: its files are read now, once."""
    app[_ASSETS] = load_assets()
    app.router.add_get("/", console_index, name="console")
    app.router.add_get("/console/{path:.+}", console_asset, name="console_asset")

"""The web console: a read-only view of the fleet, served by the API on its own port.

Plain HTML, CSS and JavaScript modules under ``static/`` (no build step; uPlot vendored
under ``static/vendor/uplot``), served from memory with a strict Content-Security-Policy.
See docs/console.md.
"""

from api.console.routes import CONTENT_SECURITY_POLICY, add_console_routes

__all__ = ["CONTENT_SECURITY_POLICY", "add_console_routes"]

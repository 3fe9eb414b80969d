"""Objects the handlers share, stored on the application under typed keys."""

from __future__ import annotations

from aiohttp import web

from api.auth import KeyStore
from api.database import Database
from api.settings import ApiSettings

__all__ = ["DATABASE", "KEYS", "SETTINGS"]

DATABASE = web.AppKey("database", Database)
KEYS = web.AppKey("keys", KeyStore)
SETTINGS = web.AppKey("settings", ApiSettings)

"""Database servers for tests: a private PostgreSQL, or one named by ``TEST_DATABASE_URL``."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

_counter = itertools.count()


@dataclass(frozen=True)
class DatabaseServer:
    """A PostgreSQL server on which tests may create and drop databases."""

    admin_url: str
    timescaledb: bool

    def url_for(self, dbname: str) -> str:
        """Conninfo of ``dbname`` on this server."""
        return make_conninfo(self.admin_url, dbname=dbname)

    @property
    def host_port(self) -> tuple[str, int]:
        """Host and port of the server, for a proxy in front of it."""
        params = conninfo_to_dict(self.admin_url)
        return str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)

    def create_database(self, template: str = "template0") -> str:
        """Create an empty database (a copy of ``template``) and return its name."""
        name = f"t_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever still uses it."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def timescaledb_available(admin_url: str) -> bool:
    """Whether the server has TimescaleDB installed and preloaded."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
            " current_setting('shared_preload_libraries') LIKE '%timescaledb%'"
        ).fetchone()
    return bool(row and row[0] and row[1])

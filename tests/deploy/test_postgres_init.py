"""deploy/postgres/10-grafana-role.sh against a real PostgreSQL, then the schema on top."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ingest.migrate import migrate
from ingest.settings import StorageSettings
from simulator.services import find_postgres_bindir
from tests.support.db import DatabaseServer

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "10-grafana-role.sh"


@pytest.fixture
def database(pg_server: DatabaseServer) -> Iterator[str]:
    """A database of its own; the cluster-wide ``grafana`` role goes with it afterwards."""
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'grafana'").fetchone():
            pytest.skip("a role grafana already exists on the test server")
    name = pg_server.create_database()
    try:
        yield name
    finally:
        pg_server.drop_database(name)
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS grafana")


def test_grafana_reads_everything_and_writes_nothing(
    pg_server: DatabaseServer, database: str, storage_mode: str
) -> None:
    psql = shutil.which("psql") or str(find_postgres_bindir() / "psql")
    params = conninfo_to_dict(pg_server.admin_url)
    env = os.environ | {
        "PATH": f"{Path(psql).parent}:{os.environ.get('PATH', '')}",
        "PGHOST": str(params.get("host", "127.0.0.1")),
        "PGPORT": str(params.get("port", 5432)),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_DB": database,
        "GRAFANA_DB_PASSWORD": "it's a 'quoted' password",
    }
    done = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    url = pg_server.url_for(database)
    asyncio.run(migrate(url, StorageSettings(storage_mode=storage_mode)))
    grafana = make_conninfo(url, user="grafana", password="it's a 'quoted' password")
    with psycopg.connect(grafana) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM devices").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM readings_1h").fetchone() == (0,)
        # What the dashboards read of alerts, but not the webhooks' signing secrets.
        assert conn.execute("SELECT count(*) FROM alert_states").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM alert_events").fetchone() == (0,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO devices (device_id) VALUES ('x')")
    with (
        psycopg.connect(grafana) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("SELECT secret FROM alert_webhooks")
    with (
        psycopg.connect(grafana, options="-c default_transaction_read_only=off") as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("INSERT INTO devices (device_id) VALUES ('x')")

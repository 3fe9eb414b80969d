#!/bin/sh
# First start of the database only (docker-entrypoint-initdb.d): the read-only role that
# Grafana queries with. Tables made later by `python -m ingest migrate` (run as postgres)
# are readable by it through the default privileges.
set -eu
psql -v ON_ERROR_STOP=1 -v password="$GRAFANA_DB_PASSWORD" -v dbname="$POSTGRES_DB" \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE grafana LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"dbname" TO grafana;
GRANT USAGE ON SCHEMA public TO grafana;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO grafana;
ALTER ROLE grafana SET default_transaction_read_only = on;
ALTER ROLE grafana SET statement_timeout = '30s';
SQL

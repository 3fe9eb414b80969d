"""The query API's connections: what every lent connection is set to."""

from __future__ import annotations

from api.database import Database


async def test_lent_connections_speak_utc_and_plan_for_their_parameters(db_url: str) -> None:
    """UTC, the statement timeout, and a plan for each run's parameters.

    With PostgreSQL's default, a statement's 6th run after psycopg prepared it also builds
    a generic plan once, which over a year of chunks took 90 to 150 ms: the 11th request of
    a query on every connection.
    """
    database = Database(db_url, min_size=1, max_size=1, statement_timeout_s=7)
    async with database, database.connection() as conn:
        cur = await conn.execute(
            "SELECT current_setting('TimeZone'), current_setting('statement_timeout'),"
            " current_setting('plan_cache_mode')"
        )
        assert await cur.fetchone() == ("UTC", "7s", "force_custom_plan")

"""Hostile path and query parameters against every GET route of the query API.

Routes come from the API's own endpoint table, so a new route is fuzzed without a change
here. Whatever the parameters, the answer is never a 5xx, and a refusal names its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import endpoints
from tests.conftest import _Templates
from tests.security.hostile import SQL_NAMES
from tests.security.servers import register, request
from tests.support.db import DatabaseServer
from tests.support.processes import ServiceProcess

ADMIN_KEY = "ak_fuzz-admin-key-0123456789abcdefghijklmnopqrstuv"
GET_ROUTES = [(e.path, sorted(e.params.model_fields)) for e in endpoints() if e.method == "GET"]

hostile_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(SQL_NAMES),
    st.sampled_from(["NaN", "Infinity", "-1", "0", "1e999", "99999999999999999999", "\x00"]),
    st.sampled_from(["2026-11-21T10:00:00Z", "2026-02-30T00:00:00Z", "9999-12-31T23:59:59Z"]),
    st.sampled_from(["avg,min,max,count", "avg,avg", "1m", "0s", "1000000d", "csv", "ndjson"]),
    st.sampled_from(["online", "offline", "never_seen", "mqtt", "http", "schema"]),
    st.integers(min_value=1, max_value=5_000).map(lambda n: "Q" * n),
)


@pytest.fixture(scope="module")
def api(
    pg_server: DatabaseServer,
    migrated_templates: _Templates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    # A process of its own: hypothesis refuses to draw while a thread of ours (the pool's
    # jitter) uses the random module.
    name = pg_server.create_database(template=migrated_templates.get("plain"))
    db_url = pg_server.url_for(name)
    register(db_url, "fuzz-1")
    env = {
        "DATABASE_URL": db_url,
        "API_ADMIN_KEY": ADMIN_KEY,
        "API_RATE_PER_KEY": "1000000",
        "API_BURST_PER_KEY": "1000000",
    }
    with ServiceProcess("api", env, tmp_path_factory.mktemp("api") / "api.log") as api:
        yield api.url
    pg_server.drop_database(name)


@st.composite
def hostile_gets(draw: st.DrawFn) -> str:
    path, fields = draw(st.sampled_from(GET_ROUTES))
    device = draw(st.just("fuzz-1") | hostile_text)
    path = path.replace("{device_id}", quote(device, safe="") or "x")
    names = st.sampled_from([f for f in fields if f != "device_id"] or ["x"]) | st.text(max_size=8)
    query = draw(st.lists(st.tuples(names, hostile_text), max_size=5))
    return f"{path}?{urlencode(query)}" if query else path


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_gets())
def test_hostile_parameters_never_cause_a_5xx(api: str, path: str) -> None:
    status, answer = request(api, "GET", path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert status < 500, (path, status, answer)
    if status >= 400:
        if isinstance(answer, bytes):
            # Refused by the HTTP parser before the application (an over-long line).
            assert status in (400, 414, 431), (path, answer[:200])
        else:
            assert answer["error"], (path, answer)
            assert answer["detail"], (path, answer)


def test_hostile_parameters_leave_the_registry_intact(api: str) -> None:
    for name in SQL_NAMES:
        path = f"/v1/devices/{quote(name, safe='')}/readings?{urlencode({'metric': name})}"
        status, answer = request(api, "GET", path, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert status in (400, 404), answer
    status, answer = request(
        api, "GET", "/v1/devices", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert [d["device_id"] for d in answer["devices"]] == ["fuzz-1"]

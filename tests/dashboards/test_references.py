"""A dashboard that names a datasource or variable Grafana would not find fails the build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from grafana_foundation_sdk.builders import dashboard, prometheus, table
from grafana_foundation_sdk.models.dashboard import Dashboard, DataSourceRef

import dashboards.build
from dashboards.build import main, render
from dashboards.datasources import PG, PROM
from dashboards.references import DashboardError
from dashboards.sql import Sql, SqlAnnotation, SqlFormat

ROOT = Path(__file__).resolve().parents[2]


def _table(sql: str = "SELECT 1 AS x") -> table.Panel:
    return (
        table.Panel().title("Broken").datasource(PG).with_target(Sql(sql, SqlFormat.TABLE, ("x",)))
    )


def _dashboard(
    *panels: table.Panel, variables: tuple[dashboard.QueryVariable, ...] = ()
) -> Dashboard:
    board = (
        dashboard.Dashboard("Bad")
        .uid("telemetry-bad")
        .with_variable(dashboard.ConstantVariable("known").value("1"))
    )
    for variable in variables:
        board.with_variable(variable)
    for panel in panels:
        board.with_panel(panel)
    return board.build()


def test_known_variables_and_grafana_globals_pass() -> None:
    sql = "SELECT ${known:sqlstring}, $__interval_ms WHERE $__timeFilter(t) AND [[known]] = $known"
    files = render([_dashboard(_table(sql).repeat("known"))])
    assert list(files) == ["bad.json"]


@pytest.mark.parametrize(
    "sql",
    ["SELECT ${nope:sqlstring}", "SELECT $nope", "SELECT [[nope]]", "SELECT ${nope}"],
)
def test_a_panel_naming_a_missing_variable_fails_the_build(sql: str) -> None:
    with pytest.raises(DashboardError, match=r"telemetry-bad: panel 'Broken' uses \$nope,"):
        render([_dashboard(_table(sql))])


def test_a_panel_repeating_for_a_missing_variable_fails_the_build() -> None:
    with pytest.raises(DashboardError, match=r"panel 'Broken' uses \$nope,"):
        render([_dashboard(_table().repeat("nope"))])


def test_a_variable_naming_a_missing_variable_fails_the_build() -> None:
    variable = dashboard.QueryVariable("device").datasource(PG).query("SELECT $nope")
    with pytest.raises(DashboardError, match=r"variable 'device' uses \$nope,"):
        render([_dashboard(variables=(variable,))])


@pytest.mark.parametrize(
    "ref",
    [
        DataSourceRef(type_val="grafana-postgresql-datasource", uid="telemetry-postgres"),
        DataSourceRef(type_val="postgres", uid="telemetry-pg"),
        DataSourceRef(uid="telemetry-pg"),
    ],
)
def test_a_panel_naming_a_missing_datasource_fails_the_build(ref: DataSourceRef) -> None:
    with pytest.raises(DashboardError, match=r"panel 'Broken' names datasource .* not provisioned"):
        render([_dashboard(_table().datasource(ref))])


def test_a_query_naming_a_missing_datasource_fails_the_build() -> None:
    query = prometheus.Dataquery().expr("up").datasource(DataSourceRef("prometheus", "nope"))
    panel = table.Panel().title("Broken").datasource(PROM).with_target(query)
    with pytest.raises(DashboardError, match=r"names datasource .*'nope'.* not provisioned"):
        render([_dashboard(panel)])


def test_a_variable_naming_a_missing_datasource_fails_the_build() -> None:
    variable = dashboard.QueryVariable("device").datasource(DataSourceRef("postgres", "pg"))
    with pytest.raises(DashboardError, match="variable 'device' names datasource"):
        render([_dashboard(variables=(variable,))])


def test_an_annotation_naming_a_missing_variable_fails_the_build() -> None:
    annotation = (
        dashboard.AnnotationQuery()
        .name("Events")
        .datasource(PG)
        .target(SqlAnnotation("SELECT $nope AS time", ("time",)))
    )
    board = _dashboard()
    board.annotations.list_val = [annotation.build()]
    with pytest.raises(DashboardError, match=r"annotation 'Events' uses \$nope,"):
        render([board])


def test_a_panel_with_queries_and_no_datasource_fails_the_build() -> None:
    panel = table.Panel().title("Broken").with_target(Sql("SELECT 1", SqlFormat.TABLE, ("x",)))
    with pytest.raises(DashboardError, match="panel 'Broken' has queries but names no datasource"):
        render([_dashboard(panel)])


def test_the_command_line_refuses_an_invalid_dashboard_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(dashboards.build, "DASHBOARDS", (_dashboard(_table("SELECT $nope")),))
    assert main(["--out", str(tmp_path)]) == 1
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert list(tmp_path.iterdir()) == []
    line = (
        "invalid dashboard: telemetry-bad: panel 'Broken' uses $nope, which the dashboard "
        "does not define"
    )
    assert capsys.readouterr().err.splitlines() == [line, line]


def _check(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashboards.build", "--check", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_exits_nonzero_on_drift_with_one_line_and_zero_when_clean(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    clean = _check(tmp_path)
    assert (clean.returncode, clean.stderr) == (0, "")
    assert clean.stdout == "3 dashboards up to date\n"
    (tmp_path / "fleet-overview.json").write_text("{}\n", encoding="utf-8")
    drift = _check(tmp_path)
    assert drift.returncode == 1
    assert drift.stderr == (
        "out of date: fleet-overview.json; run `python -m dashboards.build` and commit the result\n"
    )

"""Settings from flags and environment, and the migrate/maintain commands."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from core.errors import ConfigError
from core.settings import add_settings_arguments, settings_from_args
from ingest.cli import main
from ingest.migrate import MIGRATIONS
from ingest.settings import StorageSettings


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, StorageSettings)
    return parser.parse_args(argv)


def test_flag_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from_args(StorageSettings, _parse([])).retention_days == 365
    monkeypatch.setenv("RETENTION_DAYS", "30")
    assert settings_from_args(StorageSettings, _parse([])).retention_days == 30
    assert (
        settings_from_args(StorageSettings, _parse(["--retention-days", "7"])).retention_days == 7
    )


def test_invalid_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_DAYS", "soon")
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        settings_from_args(StorageSettings, _parse([]))


def test_help_lists_flags_with_env_names_and_defaults() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ingest", "migrate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--database-url" in out
    assert "RETENTION_DAYS" in out
    assert "default 365" in out


def test_migrate_and_maintain_commands(
    empty_db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    newest = MIGRATIONS[-1][0]
    assert main(["migrate", "--database-url", empty_db_url, "--storage-mode", "plain"]) == 0
    assert f"upgraded from version 0 to {newest} (plain path)" in capsys.readouterr().out
    assert main(["migrate", "--database-url", empty_db_url]) == 0
    assert f"already at version {newest}" in capsys.readouterr().out
    assert main(["maintain", "--database-url", empty_db_url]) == 0
    assert "rollups:" in capsys.readouterr().out


def test_cli_errors_are_one_line_without_traceback() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest",
            "migrate",
            "--database-url",
            "postgresql://x@127.0.0.1:1/none?connect_timeout=1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot connect to the database")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr

"""Structured logs: one JSON object per line, with the extras a line carries."""

from __future__ import annotations

import json
import logging

import pytest

from ingest.logs import JsonFormatter, configure_logging


def test_json_lines_carry_message_level_and_extras() -> None:
    record = logging.makeLogRecord(
        {
            "name": "ingest.http",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "device %s: %d of %d items rejected",
            "args": ("pump-1", 2, 5),
            "device_id": "pump-1",
            "reason": "schema",
        }
    )
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "device pump-1: 2 of 5 items rejected"
    assert line["level"] == "info"
    assert line["logger"] == "ingest.http"
    assert (line["device_id"], line["reason"]) == ("pump-1", "schema")
    assert line["ts"].endswith("+00:00")


def test_configure_logging_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        logging.getLogger("ingest.test").warning("hello %s", "world")
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(err)["msg"] == "hello world"
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)

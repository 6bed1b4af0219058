"""Tests for the log formatters and set-up (``trio_gateway._logging``)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from trio_gateway._logging import JsonFormatter, configure_logging


def record_at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("trio_gateway.ledger", logging.INFO, "x.py", 1, "done", (), None)
    record.created = created
    record.fields = {"request_id": "req_1", "attempt": 1}
    return record


def test_json_lines_carry_the_millisecond_utc_time_across_seconds() -> None:
    # 2026-11-22T12:00:59.999Z, then the next second, then back (the per-second cache).
    base = 1795348859.0
    times = [base + 0.999, base + 1.0005, base + 0.25, base + 3600 * 24 + 0.5]
    lines = [json.loads(JsonFormatter().format(record_at(created))) for created in times]
    assert [line["ts"] for line in lines] == [
        "2026-11-22T12:00:59.999Z",
        "2026-11-22T12:01:00.000Z",
        "2026-11-22T12:00:59.250Z",
        "2026-11-23T12:00:59.500Z",
    ]
    assert lines[0]["request_id"] == "req_1"
    assert lines[0]["msg"] == "done"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    knobs = (logging._srcfile, logging.logThreads, logging.logMultiprocessing)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logging._srcfile, logging.logThreads, logging.logMultiprocessing = knobs


@pytest.mark.usefixtures("restore_logging")
def test_configured_logging_skips_caller_lookups_and_still_writes_whole_lines() -> None:
    configure_logging("info", "json")
    assert logging._srcfile is None
    assert not logging.logThreads
    stream = io.StringIO()
    handler = logging.getLogger().handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("trio_gateway.ledger").info("attempt settled", extra={"fields": {"a": 1}})
    (line,) = stream.getvalue().splitlines()
    parsed = json.loads(line)
    assert parsed["msg"] == "attempt settled"
    assert parsed["a"] == 1
    assert parsed["level"] == "info"

"""Logging set-up for ``trio-gateway serve``: one JSON object per line, or plain text.

Theory of operation: the gateway logs through the standard library, by module
(``trio_gateway.ledger``, ``trio_gateway.relay``, …). Structured facts travel in the record's
``fields`` attribute (``logger.info("request settled", extra={"fields": {...}})``), so the JSON
formatter can put them at the top level of the line (log shippers index them without parsing
the message), and the text formatter appends them as compact JSON.

Invariants:
- One line per record: messages and tracebacks are JSON-escaped (JSON) or kept on one line by
  the formatter's caller (text mode writes tracebacks as usual, for humans).
- Nothing here adds content: secrets are kept out at the source (ledger records hold names,
  never keys; upstream text is sanitised before it is logged).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from typing import Final, Literal

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

LogFormat = Literal["json", "text"]

#: Attributes every LogRecord has; anything else set via ``extra`` is not copied implicitly.
_FIELDS_ATTRIBUTE: Final = "fields"


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields = getattr(record, _FIELDS_ATTRIBUTE, None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "pid", "msg", **fields}`` per line (``exc`` when raised)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process or os.getpid(),
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> <message> <fields as JSON>`` per line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if fields:
            text += " " + json.dumps(fields, separators=(",", ":"), ensure_ascii=False, default=str)
        return text


def _iso(created: float) -> str:
    return f"{_iso_seconds(int(created))}.{int(created % 1 * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _iso_seconds(second: int) -> str:
    """One ``strftime`` per second of log lines, not one per line."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def configure_logging(level: str, log_format: LogFormat) -> None:
    """Send every log record at ``level`` or above to standard error, formatted as chosen.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error`` (``server.log_level``).
        log_format: ``json`` (one object per line) or ``text`` (``server.log_format``).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither formatter shows the caller's file, line or function, nor thread names: don't
    # look them up for every record (the logging HOWTO's "Optimization" section). The
    # gateway logs one line per settled attempt, so this is on every request's path.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False

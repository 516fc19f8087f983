"""JSON log lines: one object per line, on stderr, for the platform's log shipper.

A line holds ``ts``, ``level``, ``logger``, ``pid``, ``msg`` and the fields a caller
passes as ``extra={"fields": {...}}``. An exception adds its type and the stack
(file, line, function, source), never its message or the local values: messages of
validation errors quote the input, and the input is a patient's record.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import traceback
from typing import Any, TextIO

import orjson

FIELDS = "fields"
_LEVELS = frozenset({"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"})


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(str(key), value)
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["stack"] = "".join(traceback.format_tb(record.exc_info[2])).rstrip()
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


def log_level(name: str) -> int:
    """The ``logging`` level for an ``IPEX_LOG_LEVEL`` value (unknown names mean INFO)."""
    upper = name.strip().upper()
    return getattr(logging, upper) if upper in _LEVELS else logging.INFO


def configure_logging(*, level: str, stream: TextIO | None = None) -> None:
    """Send every log record (ours, gunicorn's, libraries') to ``stream`` as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log_level(level))
    logging.getLogger("ipex_screen").setLevel(log_level(level))
    # Libraries' DEBUG lines quote URLs with query strings (urllib3: the FHIR search).
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(max(log_level(level), logging.INFO))
    # psycopg's pool logs every connection handed out at INFO; its warnings are kept.
    logging.getLogger("psycopg").setLevel(max(log_level(level), logging.WARNING))
    logging.captureWarnings(True)


def gunicorn_logger_class() -> type:
    """gunicorn's logger with its error log as JSON lines (the access log stays off)."""
    from gunicorn.glogging import Logger

    class JsonGunicornLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    return JsonGunicornLogger

"""Structured logs of the edge box and the hub: one JSON object per line, one line per event.

Every line has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and ``msg``,
plus the record's extras (``log.info("listening", extra={"port": 8080})`` adds
``"port": 8080``) and ``exc`` with the traceback when there is one. The access log writes
one line per request with the path only: a query string can carry a NIK
(``/rumah-tangga?q=3201...``), and logs leave the box in support tickets.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from puskesos.webauth import SIGNED_IN

__all__ = ["AccessLogger", "JsonFormatter", "configure"]

#: Attributes every LogRecord has; anything else on a record is an extra and is logged.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in event:
                event[key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def configure(level: int = logging.INFO, stream: TextIO = sys.stderr) -> None:
    """Send every logger's records to ``stream`` as JSON lines (replacing other handlers)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path without query, status, duration, who, from where."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(time * 1000, 2),
                "remote": request.remote,
                "user": request.get(SIGNED_IN),
            },
        )

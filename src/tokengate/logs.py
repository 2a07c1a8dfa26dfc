"""Log output for every command: plain text, or one JSON object per line.

    configure_logging(logging.INFO, "json")
    log.info("keys loaded")   # {"time":"2025-01-02T03:04:05.678Z","level":"INFO","logger":...}

A record may carry `fields` (a dict, passed as `extra={"fields": {...}}`): in JSON those are the
line's members in place of "message" (the access log does this); in text the message is used.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii: control and non-ASCII characters arrive escaped, so no value a client
        # sent (a path) can break the line or a terminal.
        return json.dumps(line, separators=(",", ":"), default=str)


def iso_time(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: 2025-01-02T03:04:05.678Z."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def configure_logging(level: int, log_format: str = "text") -> None:
    """Root logging to stderr in the given format (like basicConfig: a no-op when the root
    logger already has handlers)."""
    handler = logging.StreamHandler()
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])

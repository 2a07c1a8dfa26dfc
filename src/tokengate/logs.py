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
# ensure_ascii (the default): control and non-ASCII characters arrive escaped, so no value a
# client sent (a path) can break a line or a terminal. One encoder, not one per line.
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), default=str)


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self._iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
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
        return _ENCODER.encode(line)

    def _iso_time(self, created: float) -> str:
        """ISO 8601 in UTC with milliseconds: 2025-01-02T03:04:05.678Z (the seconds formatted
        once per second: an access line per request would otherwise redo it each time)."""
        seconds = int(created)
        if seconds != self._second:
            self._second = seconds
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        return f"{self._second_text}.{int((created - seconds) * 1000):03d}Z"


def configure_logging(
    level: int, log_format: str = "text", *, text_format: str = TEXT_FORMAT
) -> None:
    """Root logging to stderr in the given format (like basicConfig: a no-op when the root
    logger already has handlers). Workers pass a `text_format` that names their pid."""
    # No log format here names the thread: not looking it up saves every record (an access
    # line per request) a few microseconds. The pid is one cheap call, and tells workers apart.
    logging.logThreads = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(text_format))
    logging.basicConfig(level=level, handlers=[handler])

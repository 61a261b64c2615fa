"""Log output: human lines on a terminal, quiet lines under cron, JSON lines on request."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from typing import Literal

LogFormat = Literal["auto", "text", "json"]

PROGRESS = logging.getLogger("pipelines.progress")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` as a JSON line."""
        data = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure(log_format: LogFormat = "auto", debug: bool = False) -> Callable[[str], None]:
    """Set up logging on stderr and return the progress callback.

    ``auto`` is human text with progress on a terminal and warnings only otherwise (cron
    mails stay short); ``json`` writes every line, progress included, as JSON.

    Returns:
        A callable taking one progress line.

    """
    interactive = sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        level = logging.INFO
    elif log_format == "text" or interactive:
        handler.setFormatter(logging.Formatter("%(message)s"))
        level = logging.INFO
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        level = logging.WARNING
    root = logging.getLogger("pipelines")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else level)
    root.propagate = False
    # dlt logs through its own logger; keep it to warnings unless debugging
    logging.getLogger("dlt").setLevel(logging.DEBUG if debug else logging.WARNING)

    def say(line: str) -> None:
        PROGRESS.info(line)

    return say

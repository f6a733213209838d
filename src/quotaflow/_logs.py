"""Structured, rate-limited logs: one line per change of state, never one per request.

Every line carries an event name and ``key=value`` fields in its message and the same data in
``record.quotaflow`` (for a JSON formatter or a log shipper). :class:`LogThrottle` lets one
line per key through per interval and counts the lines it held back, so a 429 storm or a
flapping store costs one line per interval with the count, not thousands.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

from quotaflow._errors import ConfigurationError

__all__ = ["JsonFormatter", "LogThrottle", "configure_logging"]

_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_MAX_KEYS: Final = 4096


class LogThrottle:
    """Logs events on ``logger``, at most one line per key per ``interval`` seconds.

    A line that follows held-back ones says how many were held back (``suppressed=N``).
    Thread-safe; remembers at most a few thousand keys.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}  # key -> (last emitted, held back since)

    def log(self, level: int, event: str, key: str | None = None, **fields: object) -> bool:
        """Log ``event`` with ``fields`` unless a line with the same key went out too recently.

        Returns whether the line was emitted.
        """
        if not self._logger.isEnabledFor(level):
            return False
        key = key or event
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self._interval:
                self._last[key] = (last[0], last[1] + 1)
                return False
            if len(self._last) >= _MAX_KEYS:
                self._last.clear()
            self._last[key] = (now, 0)
        if last is not None and last[1]:
            fields = {**fields, "suppressed": last[1]}
        emit(self._logger, level, event, fields)
        return True


def emit(logger: logging.Logger, level: int, event: str, fields: Mapping[str, object]) -> None:
    """Log one structured line: ``event key=value ...``, with the data on the record."""
    text = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
    logger.log(
        level,
        "%s %s",
        event,
        text,
        extra={"quotaflow": {"event": event, **fields}},
    )


def _text(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (not text or " " in text or '"' in text) else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        data: dict[str, object] = {
            "time": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "quotaflow", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(
    level: str | None = None,
    fmt: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send quotaflow's logs to stderr, as text or JSON lines.

    ``level`` and ``fmt`` default to ``QUOTAFLOW_LOG_LEVEL`` (``INFO``) and
    ``QUOTAFLOW_LOG_FORMAT`` (``text`` or ``json``). Only the ``quotaflow`` logger is touched.

    Raises:
        ConfigurationError: an unknown level or format.
    """
    env = os.environ if environ is None else environ
    level = (level or env.get("QUOTAFLOW_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or env.get("QUOTAFLOW_LOG_FORMAT") or "text").lower()
    if level not in _LEVELS:
        raise ConfigurationError(f"QUOTAFLOW_LOG_LEVEL must be one of {_LEVELS}, got {level!r}")
    if fmt not in {"text", "json"}:
        raise ConfigurationError(f"QUOTAFLOW_LOG_FORMAT must be 'text' or 'json', got {fmt!r}")
    logger = logging.getLogger("quotaflow")
    for handler in list(logger.handlers):
        if getattr(handler, "_quotaflow", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler._quotaflow = True  # type: ignore[attr-defined]  # noqa: SLF001 (our own marker)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(level)

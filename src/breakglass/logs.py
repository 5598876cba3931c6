"""Logging for people and for machines: vendor SDK loggers tamed, JSON lines on request.

Vendor SDKs log a full traceback on every failed poll (UnleashClient: about 66 lines every few
seconds against an unreachable server) and, at debug, whole server bodies. The flag's health is
already logged by breakglass once per change, with its cause; a vendor logger wrapped here says a
problem once (one line, no traceback; ERROR is demoted to WARNING), repeats it only after
``repeat_after`` seconds, shows INFO only at debug and never DEBUG (where bodies are).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

LOG_FORMAT_ENV = "BREAKGLASS_LOG_FORMAT"
"""``text`` (default) or ``json``: the command's log lines on stderr."""

_MAX_LINE = 300


def _summary(exc: BaseException | None) -> str:
    """``Type: first line`` for the exception and each cause, innermost last."""
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(parts) < 4:
        seen.add(id(exc))
        first = str(exc).splitlines()[0] if str(exc) else ""
        parts.append(f"{type(exc).__name__}: {first}"[:_MAX_LINE])
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(parts)


class VendorLogFilter(logging.Filter):
    """One line per change of a vendor logger's problem; the detail only when INFO is enabled."""

    def __init__(
        self, *, repeat_after: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._repeat_after = repeat_after
        self._clock = clock
        self._said: dict[tuple[int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop repeats and chatter; fold the traceback into one line; demote errors."""
        vendor = logging.getLogger(record.name)
        floor = logging.INFO if vendor.isEnabledFor(logging.DEBUG) else logging.WARNING
        if record.levelno < floor:
            return False  # debug is where SDKs log bodies; info is their per-poll chatter
        if record.levelno > logging.WARNING:
            # breakglass itself says HALTED, with the cause, at WARNING; the vendor's view is detail.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            if not vendor.isEnabledFor(logging.WARNING):
                return False
        message = record.getMessage()
        line = message.splitlines()[0] if message else ""
        key = (record.levelno, "".join(c for c in line if not c.isdigit()))
        now = self._clock()
        if now - self._said.get(key, -float("inf")) < self._repeat_after:
            return False
        self._said[key] = now
        if record.exc_info and vendor.isEnabledFor(logging.INFO):
            line = f"{line} ({_summary(record.exc_info[1])})"
        record.msg, record.args = line[: _MAX_LINE * 2], ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def tame_vendor_loggers(*names: str) -> None:
    """Wrap each named vendor logger once (an adapter calls this when it is imported)."""
    for name in names:
        target = logging.getLogger(name)
        if not any(isinstance(f, VendorLogFilter) for f in target.filters):
            target.addFilter(VendorLogFilter())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` (and ``exc``)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int, log_format: str) -> None:
    """Send the command's log records to stderr as text or as JSON lines."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])

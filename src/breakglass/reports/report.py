"""One reader's report: who it is, what it decides, since when. The JSON both ends speak.

Example::

    {"host": "gpu-7", "pid": 4242, "instance": "9f1c...", "service": "inference",
     "role": "worker", "provider": "relay", "flag": "system-active", "active": false,
     "cause": "off", "confirmed_at": "2026-12-05T10:00:00.120Z",
     "flipped_at": "2026-12-05T10:00:00.131Z", "sent_at": "2026-12-05T10:00:00.140Z",
     "seq": 17, "interval": 5.0, "source_ids": ["relay:/run/breakglass/relay.channel"]}

``flipped_at`` is when this reader's decision last changed between active and
halted (``null`` when it has not changed since start); ``instance`` is random
per process start, so a reused pid is a new reader. ``source_ids`` names what
each of the reader's providers reads (:mod:`breakglass.source_id`; ``null`` for
one that cannot say); a relay also sends ``channel``, the source id its
workers report (``relay:`` and its channel file), so serve can relate them to it. Both are optional: a reader
that sends neither reads an unknown source.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from breakglass.clock import isoformat_ms, parse_iso

if TYPE_CHECKING:
    from datetime import datetime

ROLES = ("relay", "bridge", "worker", "serve")
_TEXT_MAX = 200
_SOURCES_MAX = 8


class ReportError(ValueError):
    """A report that cannot be accepted; the message names the field."""


@dataclass(frozen=True, slots=True)
class ReaderReport:
    """One report (see the module's example)."""

    host: str
    pid: int
    instance: str
    service: str
    role: str
    provider: str
    flag: str
    active: bool
    cause: str
    confirmed_at: datetime | None
    flipped_at: datetime | None
    sent_at: datetime
    seq: int
    interval: float
    source_ids: tuple[str | None, ...] | None = None
    channel: str | None = None

    @property
    def reader_id(self) -> str:
        """``host/pid/instance``: one reader process."""
        return f"{self.host}/{self.pid}/{self.instance}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        data = asdict(self)
        for name in ("confirmed_at", "flipped_at", "sent_at"):
            moment = data[name]
            data[name] = None if moment is None else isoformat_ms(moment)
        if self.source_ids is not None:
            data["source_ids"] = list(self.source_ids)
        return data

    @classmethod
    def from_dict(cls, data: object) -> ReaderReport:
        """Check and parse a received report.

        Raises:
            ReportError: A field is missing, of the wrong type, or absurd.
        """
        if not isinstance(data, dict):
            raise ReportError("a report is a JSON object")
        texts = {
            name: _text(data, name) for name in ("host", "instance", "service", "provider", "flag")
        }
        role = _text(data, "role")
        if role not in ROLES:
            raise ReportError(f"role must be one of {', '.join(ROLES)}")
        active = data.get("active")
        if type(active) is not bool:
            raise ReportError("active must be true or false")
        interval = _seconds(data.get("interval"))
        sent_at = _moment(data, "sent_at")
        if sent_at is None:
            raise ReportError("sent_at is required")
        return cls(
            **texts,
            pid=_count(data, "pid"),
            role=role,
            active=active,
            cause=_text(data, "cause"),
            confirmed_at=_moment(data, "confirmed_at"),
            flipped_at=_moment(data, "flipped_at"),
            sent_at=sent_at,
            seq=_count(data, "seq"),
            interval=interval,
            source_ids=_sources(data.get("source_ids")),
            channel=None if data.get("channel") is None else _text(data, "channel"),
        )


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError("interval must be a number of seconds")
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise ReportError("interval must be a number of seconds in (0, 3600]")
    return float(value)


def _sources(value: object) -> tuple[str | None, ...] | None:
    if value is None:
        return None  # an older reader: its source is unknown, never refused
    if not isinstance(value, list) or not 0 < len(value) <= _SOURCES_MAX:
        raise ReportError(f"source_ids must be a list of 1 to {_SOURCES_MAX} items")
    return tuple(
        None if item is None else _text({"source_ids": item}, "source_ids") for item in value
    )


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > _TEXT_MAX:
        raise ReportError(f"{name} must be a text of 1 to {_TEXT_MAX} characters")
    if not value.isprintable():
        raise ReportError(f"{name} must not hold control characters")
    return value


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if type(value) is not int or not 0 <= value < 2**63:
        raise ReportError(f"{name} must be a non-negative integer")
    return value


def _moment(data: dict[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ReportError(f"{name} must be an RFC 3339 time")
    try:
        return parse_iso(value)
    except ValueError:
        raise ReportError(f"{name} must be an RFC 3339 time") from None

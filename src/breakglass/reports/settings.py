"""Settings of reader reports (``BREAKGLASS_REPORT__*`` or ``[report]``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from breakglass.settings import load_section

if TYPE_CHECKING:
    from breakglass.settings import Settings

SECTION = "report"


class ReportSettings(BaseSettings):
    """Where a reader reports its state (serve), and how often it says it is alive."""

    url: str | None = None
    """serve's base URL (``https://serve.internal:8443``); reports go to ``<url>/v1/reports``.
    Unset: this reader does not report."""

    token: SecretStr | None = None
    """A serve API token of role ``reporter`` (serve refuses reports from any other role), sent as
    ``Authorization: Bearer``."""

    interval: float = Field(default=5.0, gt=0, le=3600)
    """Seconds between heartbeats; a change of state is reported at once. serve shows a reader
    silent after three intervals without a report."""

    timeout: float = Field(default=2.0, gt=0, le=60)
    """Seconds one report may take before it is given up (the next one carries the same news)."""

    service: str | None = None
    """The name serve shows for this reader's service; the program's name when unset."""

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            msg = "must be an http(s) URL"
            raise ValueError(msg)
        return value.strip().rstrip("/")


def load_report_settings(settings: Settings) -> ReportSettings:
    """The ``[report]`` section (defaults when absent); one-line errors."""
    return load_section(ReportSettings, SECTION, settings)

"""The one-page suspension report: HTML (self-contained) and PDF (printed by chromium).

The HTML needs nothing but the record: styles inline, no script, no external
address, so it can be archived as it is. The PDF is that page printed by a
headless chromium driven through Playwright (``breakglass[pdf]``), on A4.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from breakglass.errors import BreakglassError
from breakglass.resume.record import CLASSIFICATION_TEXT

_HERE = Path(__file__).parent
CHROMIUM_ENV = "BREAKGLASS_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"

_env = Environment(
    loader=FileSystemLoader(str(_HERE / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class ReportRenderError(BreakglassError):
    """The PDF could not be printed (no chromium, no Playwright, or chromium failed)."""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def render_html(record: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    template = _env.get_template("suspension_report.html")
    return template.render(
        r=record,
        duration=_duration(record.get("duration_s")),
        classification_text=CLASSIFICATION_TEXT.get(record.get("classification") or "", ""),
    )


def render_pdf(record: dict[str, Any], *, chromium: str | None = None) -> bytes:
    """The report printed to PDF (A4) by headless chromium.

    Raises:
        ReportRenderError: Playwright or chromium is missing, or printing failed.
    """
    return print_pdf(render_html(record), chromium=chromium)


def print_pdf(html: str, *, chromium: str | None = None) -> bytes:
    """A self-contained HTML page printed to PDF (A4) by headless chromium, offline.

    Raises:
        ReportRenderError: Playwright or chromium is missing, or printing failed.
    """
    executable = chromium or os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM
    if not Path(executable).exists():
        raise ReportRenderError(
            f"the PDF is printed by chromium, and {executable} does not exist "
            f"(install chromium, or set {CHROMIUM_ENV})"
        )
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ReportRenderError(
            "the PDF is printed through Playwright: install breakglass[pdf]"
        ) from None
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=executable, args=args)
            try:
                page = browser.new_page()
                # Offline by construction: the page has nothing to fetch, and may fetch nothing.
                page.route("**/*", lambda route: route.abort())
                page.set_content(html, wait_until="load")
                pdf: bytes = page.pdf(
                    format="A4",
                    print_background=True,
                    margin={"top": "12mm", "bottom": "12mm", "left": "12mm", "right": "12mm"},
                )
            finally:
                browser.close()
    except PlaywrightError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportRenderError(f"chromium could not print the report: {first[:300]}") from None
    return pdf

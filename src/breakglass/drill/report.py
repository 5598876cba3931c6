"""The drill's evidence report: one self-contained HTML page (plots inline as SVG) and its PDF.

The page needs nothing but the drill's JSON: styles inline, plots drawn as
SVG from the numbers, no script, no external address, so it can be archived
as it is and printed offline (the PDF is that page printed by chromium, see
:func:`breakglass.resume.report.print_pdf`).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

_env = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

_W = 640
_LABEL = 210
_ROW = 22


def _scale(limit: float) -> float:
    """A round upper bound for an axis."""
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400):
        if limit <= step:
            return float(step)
    return float(limit)


def _axis(top: float, height: float, upper: float) -> str:
    parts = []
    for n in range(5):
        value = upper * n / 4
        x = _LABEL + (_W - _LABEL - 20) * n / 4
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}" stroke="#ddd"/>'
            f'<text x="{x:.1f}" y="{top + height + 14}" font-size="10" text-anchor="middle">{value:g} s</text>'
        )
    return "".join(parts)


def _svg(label: str, height: float, upper: float, body: str) -> Markup:
    """One plot: the axis under ``height`` of rows, then ``body`` (built from numbers, escaped)."""
    return Markup(  # noqa: S704 -- built here from numbers and escaped labels
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height + 40}" '
        f'role="img" aria-label="{escape(label)}">' + _axis(10, height, upper) + body + "</svg>"
    )


def _x(value: float, upper: float) -> float:
    return _LABEL + (_W - _LABEL - 20) * min(value, upper) / upper


def halt_plot(data: dict[str, Any]) -> Markup:
    """Bars: each reader's time from the halt request to refusing, and the declared time."""
    readers = data["readers"]
    declared = float(data["plan"]["declared_halt_time_s"])
    if not readers:
        return Markup('<p class="none">No reader reported halted.</p>')
    upper = _scale(max([declared * 1.1, *(r["halted_after_s"] or 0 for r in readers)]))
    height = _ROW * len(readers)
    rows = []
    for n, r in enumerate(readers):
        y = 10 + n * _ROW
        label = escape(f"{r['service']} · {r['host']}/{r['reader'].split('/')[1]}")
        if r["halted_after_s"] is None:
            # Never drawn as a bar at 0 s: it was not seen refusing, or refused from its start.
            said, colour = (
                ("refusing from its start", "#555")
                if r.get("refusing_from_start")
                else ("NOT seen refusing", "#b3261e")
            )
            rows.append(
                f'<text x="{_LABEL - 6}" y="{y + 14}" font-size="11" text-anchor="end">{label}</text>'
                f'<text x="{_LABEL + 4}" y="{y + 14}" font-size="10" fill="{colour}">{said}</text>'
            )
            continue
        value = r["halted_after_s"]
        colour = "#b3261e" if value > declared else "#1b7f3b"
        rows.append(
            f'<text x="{_LABEL - 6}" y="{y + 14}" font-size="11" text-anchor="end">{label}</text>'
            f'<rect x="{_LABEL}" y="{y + 3}" width="{_x(value, upper) - _LABEL:.1f}" height="14" fill="{colour}"/>'
            f'<text x="{_x(value, upper) + 4:.1f}" y="{y + 14}" font-size="10">{value:.3f} s</text>'
        )
    dx = _x(declared, upper)
    return _svg(
        "Halt time per reader",
        height,
        upper,
        "".join(rows)
        + f'<line x1="{dx:.1f}" y1="4" x2="{dx:.1f}" y2="{height + 12}" stroke="#b3261e" stroke-dasharray="4 3"/>'
        f'<text x="{dx:.1f}" y="{height + 36}" font-size="10" fill="#b3261e" text-anchor="middle">declared {declared:g} s</text>',
    )


def notification_plot(data: dict[str, Any]) -> Markup:
    """Per group: when it was alerted (●) and acknowledged (◆), against its timeframe."""
    groups = data["notifications"]
    if not groups:
        return Markup('<p class="none">No group was followed.</p>')
    values = [
        v
        for g in groups
        for v in (g["delivered_after_s"], g["acknowledged_after_s"], g["timeframe_s"])
        if v is not None
    ]
    upper = _scale(max(values) * 1.05)
    height = _ROW * len(groups)
    rows = []
    for n, g in enumerate(groups):
        y = 10 + n * _ROW
        mid = y + 10
        deadline = _x(g["timeframe_s"], upper)
        rows.append(
            f'<text x="{_LABEL - 6}" y="{y + 14}" font-size="11" text-anchor="end">{escape(g["group"])}</text>'
            f'<rect x="{_LABEL}" y="{y + 6}" width="{deadline - _LABEL:.1f}" height="8" fill="#e8eef7"/>'
            f'<line x1="{deadline:.1f}" y1="{y + 2}" x2="{deadline:.1f}" y2="{y + 18}" stroke="#555"/>'
        )
        if g["delivered_after_s"] is not None:
            rows.append(
                f'<circle cx="{_x(g["delivered_after_s"], upper):.1f}" cy="{mid}" r="5" fill="#1f5fbf"/>'
            )
        if g["acknowledged_after_s"] is not None:
            ax = _x(g["acknowledged_after_s"], upper)
            rows.append(
                f'<path d="M{ax:.1f} {mid - 6} L{ax + 6:.1f} {mid} L{ax:.1f} {mid + 6} L{ax - 6:.1f} {mid} Z" fill="#1b7f3b"/>'
            )
        else:
            rows.append(
                f'<text x="{deadline + 6:.1f}" y="{y + 14}" font-size="10" fill="#b3261e">not acknowledged</text>'
            )
    return _svg(
        "Notification timeline",
        height,
        upper,
        "".join(rows)
        + f'<text x="{_LABEL}" y="{height + 36}" font-size="10">● alerted  ◆ acknowledged  | timeframe</text>',
    )


def render_html(data: dict[str, Any], *, signature: dict[str, Any] | None = None) -> str:
    """The report as one self-contained HTML page."""
    return _env.get_template("drill_report.html").render(
        d=data,
        signature=signature,
        halt_svg=halt_plot(data),
        notify_svg=notification_plot(data),
    )


def render_pdf(data: dict[str, Any], *, signature: dict[str, Any] | None = None) -> bytes:
    """The report printed to PDF (A4).

    Raises:
        breakglass.resume.report.ReportRenderError: No chromium or Playwright, or printing failed.
    """
    from breakglass.resume.report import print_pdf

    return print_pdf(render_html(data, signature=signature))

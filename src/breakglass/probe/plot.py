"""The probe's plot: the distribution of propagation latency per provider and reader.

Built from the JSON reports (:func:`breakglass.probe.report.to_json`), so
runs against several providers, saved separately, can share one picture.
Needs matplotlib (``pip install 'breakglass[plot]'``); it draws with the Agg
backend and never opens a window.

Left: one box per series (each reader up to eight, else all readers pooled,
and the fleet's last reader per round), every round as a dot. Right: the
cumulative distribution of the fleet's figure, with the p95 and p99 levels and
the bounds; rounds that timed out keep the curve below 1.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from breakglass.errors import ProbeError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from matplotlib.axes import Axes

PER_READER_SERIES = 8


def _series(report: dict[str, Any]) -> list[tuple[str, list[float], int]]:
    """(label, observed values in ms, timed-out count) per box."""
    provider = report["provider"]
    readers = int(report["readers"])
    rounds = report["rounds"]
    series = []
    if readers <= PER_READER_SERIES and readers > 1:
        for i in range(readers):
            values = [r["propagation_ms"][i] for r in rounds]
            series.append(
                (
                    f"{provider}\nreader {i}",
                    [v for v in values if v is not None],
                    sum(v is None for v in values),
                )
            )
    elif readers > PER_READER_SERIES:
        values = [v for r in rounds for v in r["propagation_ms"]]
        series.append(
            (
                f"{provider}\nall {readers} readers",
                [v for v in values if v is not None],
                sum(v is None for v in values),
            )
        )
    fleet = [r["fleet_propagation_ms"] for r in rounds]
    label = f"{provider}\nlast of {readers}" if readers > 1 else f"{provider}\n1 reader"
    series.append((label, [v for v in fleet if v is not None], sum(v is None for v in fleet)))
    return series


def render_plot(reports: Sequence[dict[str, Any]], path: Path, *, title: str | None = None) -> None:
    """Draw the reports' propagation latency to a PNG at ``path``.

    Args:
        reports: JSON reports of one or more runs.
        path: Where the PNG goes (parents created).
        title: The figure's title; by default it names the providers and rounds.

    Raises:
        ProbeError: matplotlib is not installed.
    """
    try:
        import matplotlib as mpl

        mpl.use("Agg")  # never a window, even where a display exists
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ProbeError(
            "--plot needs matplotlib: install it with pip install 'breakglass[plot]'"
        ) from exc

    boxes = [s for report in reports for s in _series(report)]
    fig = Figure(figsize=(max(8.0, 1.3 * len(boxes) + 5.0), 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[max(1.0, len(boxes) / 2), 2.0])
    _draw_boxes(left, boxes)
    _draw_cdf(right, reports)
    if title is None:
        names = ", ".join(sorted({str(r["provider"]) for r in reports}))
        title = f"breakglass probe: {names}, toggle -> guard flipped"
    fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _draw_boxes(axes: Axes, boxes: list[tuple[str, list[float], int]]) -> None:
    data = [values or [math.nan] for _, values, _ in boxes]
    axes.boxplot(data, whis=(1, 99), showfliers=False)
    axes.set_xticks(range(1, len(boxes) + 1), [label for label, _, _ in boxes], fontsize=8)
    for position, (_, values, timed_out) in enumerate(boxes, start=1):
        step = 0.3 / max(1, len(values))
        xs = [position - 0.15 + step * k for k in range(len(values))]
        crowded = len(values) > 300  # thousands of dots would hide the box
        size, alpha = (2, 0.15) if crowded else (6, 0.5)
        axes.scatter(xs, values, s=size, alpha=alpha, color="tab:blue", linewidths=0)
        if timed_out:
            axes.annotate(
                f"{timed_out} timed out",
                (position, 1.0),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="top",
                color="tab:red",
                fontsize=8,
            )
    axes.set_ylabel("propagation: acknowledged -> guard flipped (ms)")
    axes.set_title("per reader (box: p25-p75, whiskers p1-p99)", fontsize=9)
    axes.grid(axis="y", alpha=0.3)


def _draw_cdf(axes: Axes, reports: Sequence[dict[str, Any]]) -> None:
    drawn: set[tuple[str, float]] = set()
    for report in reports:
        fleet = [r["fleet_propagation_ms"] for r in report["rounds"]]
        seen = sorted(v for v in fleet if v is not None)
        if not fleet:
            continue
        ys = [(k + 1) / len(fleet) for k in range(len(seen))]
        readers = int(report["readers"])
        who = f"last of {readers} readers" if readers > 1 else "1 reader"
        label = f"{report['provider']}, {who} (n={len(fleet)})"
        axes.step(seen, ys, where="post", label=label)
        for bound_key in ("max_p95_ms", "max_p99_ms"):
            bound = report["bounds"].get(bound_key)
            if bound is not None and (bound_key, bound) not in drawn:
                drawn.add((bound_key, bound))
                axes.axvline(bound, color="tab:red", linestyle="--", linewidth=1)
                axes.annotate(
                    f"bound {bound_key[4:7]} {bound:g} ms",
                    (bound, 0.5),
                    rotation=90,
                    fontsize=7,
                    color="tab:red",
                    ha="right",
                    va="center",
                )
    for level in (0.95, 0.99):
        axes.axhline(level, color="grey", linestyle=":", linewidth=1)
        axes.annotate(
            f"p{round(level * 100)}",
            (0.0, level),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="bottom",
        )
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("fleet propagation: acknowledged -> last reader flipped (ms)")
    axes.set_ylabel("fraction of rounds")
    axes.set_title("cumulative distribution (timeouts keep it below 1)", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")

"""Aligned columns for the lists people read (providers, tokens, drills, audit, notifications).

Plain text only: no colour or box drawing, so a pipe, ``grep`` or ``awk`` reads the same lines a
person does. Columns are two spaces apart and a cell never holds two spaces running, so splitting
a line on two or more spaces gives its fields back; an empty cell shows ``-``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from breakglass.safe_text import safe

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

GAP = "  "
_RUNS = re.compile(r"\s{2,}")


def _cell(value: object) -> str:
    text = "" if value is None else safe(value)
    return _RUNS.sub(" ", text).strip() or "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The header line then one line per row, each column as wide as its widest cell."""
    cells = [[_cell(h) for h in headers], *([_cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return [
        GAP.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]

"""How ``breakglass watch`` shows the live state: refreshed in place on a terminal, lines in a pipe.

On a terminal the current state is one block redrawn in place every interval; a change leaves the
old block standing and starts a new one, so the screen keeps the history of changes. In a pipe
(or a file) each sample is one plain line (its parts joined by '; '), or only the changes with ``--changes``; no escape
codes ever reach a pipe. Colour (ACTIVE green, HALTED red) only on a terminal, never when
``NO_COLOR`` is set (https://no-color.org) or ``TERM=dumb``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_GREEN, _RED, _RESET = "\x1b[32m", "\x1b[1;31m", "\x1b[0m"
_ERASE_BELOW = "\x1b[J"


def wants_colour(stream: TextIO, environ: Mapping[str, str] = os.environ) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` (non-empty) or ``TERM=dumb``."""
    return stream.isatty() and not environ.get("NO_COLOR") and environ.get("TERM", "") != "dumb"


class WatchView:
    """Shows one sample at a time; see the module's docstring for the three modes."""

    def __init__(
        self,
        stream: TextIO,
        describe: Callable[[dict[str, Any]], str],
        *,
        as_json: bool = False,
        changes_only: bool = False,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._out = stream
        self._describe = describe
        self._json = as_json
        self._changes_only = changes_only
        self._live = stream.isatty() and not as_json and environ.get("TERM", "") != "dumb"
        self._colour = not as_json and wants_colour(stream, environ)
        self._previous: bool | None = None
        self._drawn = 0  # lines of the block drawn last (to redraw in place)

    def show(self, at: str, info: dict[str, Any]) -> None:
        """Show the state ``info`` sampled at ``at`` (RFC 3339)."""
        changed = self._previous is not None and self._previous != info["active"]
        first = self._previous is None
        self._previous = info["active"]
        if self._changes_only and not (first or changed):
            return
        if self._json:
            self._write(json.dumps({"at": at, "changed": changed, **info}) + "\n")
            return
        text = self._describe(info)
        if self._colour:
            word = "ACTIVE" if info["active"] else "HALTED"
            colour = _GREEN if info["active"] else _RED
            text = text.replace(word, f"{colour}{word}{_RESET}", 1)
        if not self._live:  # one line per sample, for grep and logs
            flat = "; ".join(part.strip() for part in text.splitlines())
            self._write(f"{at} {'changed' if changed else '       '} {flat}\n")
            return
        redraw = "" if changed or not self._drawn else f"\x1b[{self._drawn}F{_ERASE_BELOW}"
        block = f"{at} {text}\n"
        self._write(redraw + block)
        self._drawn = block.count("\n")

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

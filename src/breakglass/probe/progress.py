"""A progress bar on stderr while the probe runs.

On a terminal it redraws one line; elsewhere (CI logs) it prints a line at
every tenth of the run, so logs stay short.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from breakglass.probe.result import ProbeResult


class ProgressBar:
    """Call it with the result after each round; :meth:`close` ends the line.

    Args:
        total: Rounds the run will take.
        stream: Where to draw (stderr by default).
        width: Characters in the bar.
    """

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self._total = max(1, total)
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._tty = self._stream.isatty()
        self._every = max(1, self._total // 10)
        self._drawn = False

    def __call__(self, result: ProbeResult) -> None:
        """Show the progress after a round."""
        done = len(result.rounds)
        if not self._tty and done % self._every and done != self._total:
            return
        last = result.rounds[-1].fleet("propagation_ms") if result.rounds else None
        last_text = "timed out" if last is None else f"{last:7.1f} ms"
        timed_out = sum(1 for r in result.rounds if r.timed_out)
        filled = self._width * done // self._total
        bar = "#" * filled + "." * (self._width - filled)
        line = (
            f"[{bar}] {done:>4}/{self._total} rounds  last {last_text}  "
            f"rounds timed out {timed_out}"
        )
        if self._tty:
            self._stream.write("\r" + line)
            self._drawn = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line on a terminal."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

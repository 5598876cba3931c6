"""Text from outside, made safe to show on a terminal.

Vendor error messages, actors, reasons, manifest fields and file names come
from people and programs the bridge does not control. Written raw to a
terminal, an escape sequence in one of them can move the cursor, erase a
line or recolour it, and so print a fake verdict ("intact", "halted") above
or over the real one; a bidirectional override can reorder what is shown.

:func:`safe` escapes every character that is not printable (control
characters C0 and C1, DEL, format characters such as bidirectional
overrides and zero-width marks, line and paragraph separators, surrogates,
private-use and unassigned code points) as a Python-style escape, so the
text keeps its meaning and stays on one line. Use it on every piece of
outside text a command prints; a command's own words need nothing.
"""

from __future__ import annotations

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(text: object, *, limit: int | None = None) -> str:
    """``text`` (``str()`` of it) with every non-printable character escaped.

    Args:
        text: Anything; ``None`` and numbers come out as ``str()`` gives them.
        limit: Keep at most this many characters of the input, then say how
            many more there were (for messages that may be huge).

    Returns:
        One line that a terminal shows as it reads.
    """
    value = text if isinstance(text, str) else str(text)
    more = 0
    if limit is not None and len(value) > limit:
        more = len(value) - limit
        value = value[:limit]
    if not value.isprintable():
        value = "".join(c if c.isprintable() else _escape(c) for c in value)
    if more:
        value += f"... ({more} more characters)"
    return value


__all__ = ["safe"]

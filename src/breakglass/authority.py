"""Whether this process could change the flag: halt authority must not sit with the halted.

A guarded service that can write its own stop flag can un-halt itself (a bug,
a compromised dependency, or an operator in the service's group with umask
002). The deployment described in ``docs/deployment.md`` keeps the flag where
only the operator's account can change it; the service only reads it. This
module asks each provider's admin whether *this* process holds that power, so
the bridge can warn at start and ``breakglass status`` can say so.

An admin may offer ``halt_authority() -> str | None``: one line naming what
gives this process the power to change the flag (a writable store file, a
writable directory around it, an admin token in its settings), or ``None``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from breakglass.seams import Backend


def halt_authority(backends: Sequence[Backend]) -> list[str]:
    """One line per way this process could change the flag (empty: it can only read it)."""
    found = []
    for backend in backends:
        check = getattr(backend.admin, "halt_authority", None)
        line = check() if callable(check) else None
        if isinstance(line, str) and line:
            found.append(f"{backend.name}: {line}")
    return found


def file_authority(path: Path) -> str | None:
    """How this process could change the file at ``path``: write it, or replace or create it in its directory."""
    path = Path(os.path.abspath(path))
    if path.exists() and os.access(path, os.W_OK):
        return f"this process can write the flag store {path}"
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    if os.access(directory, os.W_OK | os.X_OK):
        verb = "replace" if path.exists() else "create"
        return (
            f"this process can {verb} the flag store {path} (its directory {directory} is writable)"
        )
    return None

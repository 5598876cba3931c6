"""How every ``breakglass`` command reports a failure: one line on stderr, or one JSON object.

A command run with ``--json`` (or the probe's ``--json -``) is read by a program, so its
failure is JSON on stdout too, in the shape ``halt`` and ``resume`` use, with the exit code
it would have without ``--json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from breakglass.safe_text import safe

STDOUT = "-"


def wants_json() -> bool:
    """Whether the running command (or a group around it) was asked for JSON on stdout."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json") is True or str(ctx.params.get("json_path")) == STDOUT:
            return True
        ctx = ctx.parent
    return False


def error_object(kind: str, message: str, exit_code: int) -> dict[str, Any]:
    """The ``error`` member of a failed command's JSON: what failed, why, and the exit code."""
    return {"type": kind, "message": message, "exit_code": exit_code}


def fail(error: BaseException | str, *, exit_code: int = 1, prefix: str = "breakglass") -> NoReturn:
    """Report ``error`` (scrubbed of control characters) and exit with ``exit_code``."""
    message = safe(error)
    if wants_json():
        kind = type(error).__name__ if isinstance(error, BaseException) else "Error"
        click.echo(json.dumps({"ok": False, "error": error_object(kind, message, exit_code)}))
    else:
        click.echo(f"{prefix}: error: {message}", err=True)
    sys.exit(exit_code)

"""How every ``breakglass`` command reports a failure: one line on stderr, or one JSON object.

A command run with ``--json`` (or the probe's ``--json -``) is read by a program, so its
failure is JSON on stdout too, in the shape ``halt`` and ``resume`` use, with the exit code
it would have without ``--json``. Stdout, not stderr: stderr carries the log lines (text or
``--log-format json``) and warnings meant for people, so a program reading stdout gets exactly
one object whether the command succeeded or not. A usage error (an unknown option, a missing
argument, a bad value: exit 2) is reported the same way when the command line asks for JSON,
even when the parsing fails before it reaches ``--json``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from breakglass.safe_text import safe

if TYPE_CHECKING:
    from collections.abc import Sequence

STDOUT = "-"
_ASKED = "breakglass.json"
"""The key in the root context's ``meta``: whether the raw command line asks for JSON."""

json_flag = click.option(
    "--json", "as_json", is_flag=True, help="Print the result (or the failure) as JSON on stdout."
)


def wants_json() -> bool:
    """Whether the running command (or a group around it) was asked for JSON on stdout."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json") is True or str(ctx.params.get("json_path")) == STDOUT:
            return True
        ctx = ctx.parent
    return False


def print_json(payload: Any) -> None:
    """One JSON document on stdout (one line: a program reads it line by line)."""
    click.echo(json.dumps(payload))
    sys.stdout.flush()  # a long-running command's line must reach a pipe now, not at exit


def error_object(kind: str, message: str, exit_code: int) -> dict[str, Any]:
    """The ``error`` member of a failed command's JSON: what failed, why, and the exit code."""
    return {"type": kind, "message": message, "exit_code": exit_code}


def _json_failure(kind: str, message: str, exit_code: int) -> NoReturn:
    print_json({"ok": False, "error": error_object(kind, message, exit_code)})
    sys.exit(exit_code)


def fail(error: BaseException | str, *, exit_code: int = 1, prefix: str = "breakglass") -> NoReturn:
    """Report ``error`` (scrubbed of control characters) and exit with ``exit_code``."""
    message = safe(error)
    if wants_json():
        kind = type(error).__name__ if isinstance(error, BaseException) else "Error"
        _json_failure(kind, message, exit_code)
    click.echo(f"{prefix}: error: {message}", err=True)
    sys.exit(exit_code)


def asks_for_json(command: click.Command, args: Sequence[str]) -> bool:
    """Whether ``args`` ask for JSON output, read without parsing them (parsing may fail).

    ``--json`` counts wherever it stands before ``--``, even where no command takes it (the
    caller still wants to read the failure as JSON); where it takes a value (the probe's
    report file), only ``-`` (stdout) counts.
    """
    current = command
    for index, arg in enumerate(args):
        if arg == "--":
            return False
        if isinstance(current, click.Group) and arg in current.commands:
            current = current.commands[arg]
            continue
        name, equals, value = arg.partition("=")
        if name != "--json":
            continue
        option = next((p for p in current.params if "--json" in p.opts), None)
        if not isinstance(option, click.Option) or option.is_flag:
            return True
        if not equals:
            value = args[index + 1] if index + 1 < len(args) else ""
        if value == STDOUT:
            return True
    return False


class JsonErrorsGroup(click.Group):
    """The root group: a usage error is one JSON object when the command line asks for JSON.

    Click parses a subcommand's options only when the group invokes it, so both steps are
    covered: the root's own options (``make_context``) and everything after (``invoke``).
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """Parse the root's options; a usage error is JSON when ``args`` ask for JSON."""
        asked = parent is None and asks_for_json(self, args)
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:
            if asked:
                _json_failure(type(exc).__name__, safe(exc.format_message()), exc.exit_code)
            raise
        ctx.meta[_ASKED] = asked
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; its usage errors are JSON when the command line asked for JSON."""
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if ctx.meta.get(_ASKED) is True:
                _json_failure(type(exc).__name__, safe(exc.format_message()), exc.exit_code)
            raise

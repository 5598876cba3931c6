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
        current = _subcommand(current, arg) or current
        name, equals, value = arg.partition("=")
        if name != "--json":
            continue
        option = json_option(current)
        if option is None or option.is_flag:
            return True
        if not equals:
            value = args[index + 1] if index + 1 < len(args) else ""
        if value == STDOUT:
            return True
    return False


def json_option(command: click.Command) -> click.Option | None:
    """The command's own ``--json`` option, if it has one."""
    found = [p for p in command.params if "--json" in p.opts]
    return found[0] if found and isinstance(found[0], click.Option) else None


def _subcommand(command: click.Command, arg: str) -> click.Command | None:
    return command.commands.get(arg) if isinstance(command, click.Group) else None


def with_json(command: click.Command, args: list[str]) -> list[str]:
    """``args`` for ``command`` with its own ``--json`` added (the global ``--json`` given).

    Unchanged when ``--json`` is already there (the probe's may name a report file), or when
    ``args`` stop at a group that needs a subcommand: Click then says what is missing.
    """
    end = args.index("--") if "--" in args else len(args)
    if any(arg.partition("=")[0] == "--json" for arg in args[:end]):
        return args
    target = command
    for arg in args[:end]:
        target = _subcommand(target, arg) or target
    option = json_option(target)
    if option is None:
        return args
    added = ["--json"] if option.is_flag else ["--json", STDOUT]
    return [*args[:end], *added, *args[end:]]


def _usage_failure(exc: click.ClickException) -> NoReturn:
    message = exc.format_message()
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):  # its message is the whole help
        group = exc.ctx.command
        names = ", ".join(group.commands) if isinstance(group, click.Group) else ""
        message = f"{exc.ctx.command_path} needs a command: {names}"
    _json_failure(type(exc).__name__, safe(message), exc.exit_code)


class JsonErrorsGroup(click.Group):
    """The root group: a usage error is one JSON object when the command line asks for JSON.

    Click parses a subcommand's options only when the group invokes it, so both steps are
    covered: the root's own options (``make_context``) and everything after (``invoke``). The
    root's own ``--json`` is passed on to the command that runs (``resolve_command``).
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
                _usage_failure(exc)
            raise
        ctx.meta[_ASKED] = asked
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; its usage errors are JSON when the command line asked for JSON."""
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if ctx.meta.get(_ASKED) is True:
                _usage_failure(exc)
            raise

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The subcommand and its arguments, with ``--json`` when the root was given it."""
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not ctx.resilient_parsing and ctx.params.get("as_json"):
            rest = with_json(command, rest)
        return name, command, rest

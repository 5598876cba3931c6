"""The ``breakglass`` command: status, halt, resume, watch, demo, probe, audit, relay.

Exit codes: 0 active (or done), 3 halted (``status``), 1 an error (named
on stderr, without secrets), 2 a usage error; ``halt``: 4 ``NOT HALTED``
(failed, or readers are still served true); ``resume``: 4 refused by the
resumption gate, 5 ``NOT RESUMED`` (failed, or readers are still served false).
With ``--json`` a failure, a usage error too, is one JSON object on stdout
(:mod:`breakglass.cli_errors`).

``halt`` and ``resume`` are confirmed by what readers are served after the
change (the vendor's evaluation for the service's context), not by the
vendor's on/off switch; they print what they changed (store path, or vendor
project, environment and flag).
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import sys
import time
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, NoReturn

import click

from breakglass.audit.cli import audit
from breakglass.audit.last_change import LastChangeFollower, last_change
from breakglass.bridge import Bridge
from breakglass.cli_errors import JsonErrorsGroup, error_object, fail
from breakglass.clock import SYSTEM_CLOCK, isoformat_ms
from breakglass.columns import table
from breakglass.database.cli import db
from breakglass.drill.cli import drill
from breakglass.errors import BreakglassError
from breakglass.extras import require_extras
from breakglass.logs import LOG_FORMAT_ENV
from breakglass.logs import configure as configure_logging
from breakglass.notify.cli import notify
from breakglass.plugins import provider_distributions
from breakglass.probe.cli import probe
from breakglass.relay.cli import relay
from breakglass.safe_text import safe
from breakglass.serve.cli import serve
from breakglass.settings import Settings, load_settings
from breakglass.state import Cause
from breakglass.targets import TargetResult

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from breakglass.seams import Acknowledgement
    from breakglass.state import FlagState

EXIT_HALTED = 3
EXIT_REFUSED = 4
"""``resume`` refused by the resumption gate (the missing items are printed)."""
EXIT_NOT_HALTED = 4
"""``halt`` did not take effect (failed, or readers are still served true)."""
EXIT_NOT_RESUMED = 5
"""``resume`` did not take effect (failed, or readers are still served false)."""


def default_actor() -> str:
    """``user@host`` of whoever runs the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class _Context:
    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = overrides

    def settings(self) -> Settings:
        return load_settings(**self.overrides)


def _fail(exc: BreakglassError) -> NoReturn:
    fail(exc)


def state_as_dict(state: FlagState, bridge: Bridge) -> dict[str, Any]:
    """The JSON shape of ``status --json`` and ``watch --json``."""
    return {
        "flag": bridge.settings.flag_key,
        "active": state.active,
        "reason": state.cause.value,
        "cause": state.cause.value,  # "reason" is the older name, kept for readers of it
        "detail": state.detail,
        "provider": bridge.name,
        "source": state.source,
        "confirmed_at": isoformat_ms(state.confirmed_at) if state.confirmed_at else None,
        "age_ms": _round(state.age_ms(SYSTEM_CLOCK.monotonic())),
        "max_staleness_s": bridge.settings.max_staleness,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _describe(info: dict[str, Any]) -> str:
    word = "ACTIVE" if info["active"] else "HALTED"
    age = "never confirmed" if info["age_ms"] is None else f"confirmed {info['age_ms']:.0f} ms ago"
    line = (
        f"{safe(info['flag'])}: {word} (provider {safe(info['provider'])}, "
        f"source {safe(info['source'])}, {age})"
    )
    if not info["active"]:
        line += f"\n  cause: {info['reason']}: {safe(info['detail'])}"  # detail: vendor text
    change = info.get("last_change")
    if change:
        line += (
            f"\n  last change: {change['action']} by {safe(change['actor'])} at {change['at']} "
            f"through {safe(change['provider'])}: {safe(change['reason'])}"
        )
    if info["reason"] == "flag_missing" and info["provider"] == "local":
        line += (
            '\n  hint: the flag does not exist yet; `breakglass resume --reason "..."` creates it'
        )
    return line


@click.group(cls=JsonErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="breakglass", prog_name="breakglass", message="%(prog)s %(version)s"
)
@click.option("--provider", help="Override BREAKGLASS_PROVIDER.")
@click.option("--flag-key", help="Override BREAKGLASS_FLAG_KEY.")
@click.option(
    "--state-dir", type=click.Path(file_okay=False), help="Override BREAKGLASS_STATE_DIR."
)
@click.option("-v", "--verbose", count=True, help="Log state changes (-vv: debug).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar=LOG_FORMAT_ENV,
    help=f"Log lines on stderr as text or JSON (or {LOG_FORMAT_ENV}).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="The command's result and failures as JSON on stdout (its own --json; the probe's "
    "--json -).",
)
@click.pass_context
def main(
    ctx: click.Context,
    provider: str | None,
    flag_key: str | None,
    state_dir: str | None,
    verbose: int,
    log_format: str,
    *,
    as_json: bool,
) -> None:
    """A fail-closed stop button for a high-risk AI system (EU AI Act Art. 14(4)(e))."""
    del as_json  # passed on to the command by JsonErrorsGroup.resolve_command
    level = {0: logging.ERROR, 1: logging.INFO}.get(verbose, logging.DEBUG)
    configure_logging(level, log_format)
    overrides: dict[str, Any] = {}
    if provider:
        overrides["provider"] = provider
    if flag_key:
        overrides["flag_key"] = flag_key
    if state_dir:
        overrides["state_dir"] = state_dir
    ctx.obj = _Context(overrides)


def _open(ctx: _Context, *, read_only: bool = False) -> Bridge:
    bridge = Bridge.from_settings(ctx.settings(), read_only=read_only)
    bridge.role = None  # a command that reads once is not a reader serve should count
    if read_only:
        # Looking is not an event: status and watch leave the audit trail and the remembered
        # state as they found them (a flip they notice was made, and recorded, by whoever made it).
        bridge.recorder.record_observed = False
    return bridge


def _late_override(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def record(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.find_root().obj.overrides[name] = value

    return record


def _global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The global --provider, --flag-key and --state-dir, also after the command's name.

    ``breakglass status --provider unleash`` then means ``breakglass --provider unleash status``.
    """
    for flag, name, kind in (
        ("--state-dir", "state_dir", click.Path(file_okay=False)),
        ("--flag-key", "flag_key", None),
        ("--provider", "provider", None),
    ):
        command = click.option(
            flag,
            type=kind,
            expose_value=False,
            callback=_late_override(name),
            help=f"Same as the global {flag} (before the command's name).",
        )(command)
    return command


@main.command()
@_global_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--wait",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for a first confirmation.",
)
@click.pass_obj
def status(ctx: _Context, *, as_json: bool, wait: float) -> None:
    """Print whether the system may run; exit 0 when active, 3 when halted."""
    try:
        with _open(ctx, read_only=True) as bridge:
            state = bridge.engine.wait_for_confirmation(wait)
            info = state_as_dict(state, bridge)
            info["last_change"] = last_change(bridge.settings)
            authority = bridge.halt_authority()
    except BreakglassError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({**info, "can_change_flag": authority}))
    else:
        click.echo(_describe(info))
        for line in authority:
            click.echo(
                f"breakglass: warning: {safe(line)}; a guarded service running like this could "
                "un-halt itself (see the privilege-separated layout in docs/deployment.md)",
                err=True,
            )
    sys.exit(0 if info["active"] else EXIT_HALTED)


def _change(
    ctx: _Context,
    *,
    active: bool,
    actor: str,
    reason: str,
    as_json: bool,
    on_done: Callable[[list[TargetResult]], None] | None = None,
) -> None:
    try:
        bridge = _open(ctx)
    except BreakglassError as exc:
        # No provider to ask, so no dashboard to name: the halts that need none still stand.
        _not_changed(active=active, error=exc, fallback=_fallback(None), as_json=as_json)
    if len(bridge.targets()) > 1:  # several providers, or the kill switch too
        _change_all(
            bridge, active=active, actor=actor, reason=reason, as_json=as_json, on_done=on_done
        )
        return
    fallback = _fallback(bridge)
    started, tick = SYSTEM_CLOCK.now(), time.monotonic()
    try:
        ack: Acknowledgement = bridge.admin.set_active(active, actor=actor, reason=reason)
    except BreakglassError as exc:
        _not_changed(active=active, error=exc, fallback=fallback, as_json=as_json)
    finally:
        bridge.close()  # flushes the audit record of this change and releases the admin's session
    info = ack_as_dict(ack, bridge.backend.name, actor=actor, reason=reason)
    if not ack.confirmed:
        _not_changed(active=active, ack=ack, info=info, fallback=fallback, as_json=as_json)
    if on_done is not None:  # only once readers are served the change
        elapsed = (time.monotonic() - tick) * 1000
        on_done(
            [
                TargetResult(
                    bridge.backend.name, active, ack, None, started, SYSTEM_CLOCK.now(), elapsed
                )
            ]
        )
    if as_json:
        click.echo(json.dumps({"ok": True, **info}))
        return
    flag, target = safe(ack.flag_key), safe(ack.target or bridge.backend.name)
    if ack.created and not active:
        # Nothing read this flag as active (a missing flag reads halted): this halt stopped nothing.
        click.echo(f"{flag} created halted in {target}; readers of it are served false")
        click.echo(
            f"breakglass: warning: {flag} did not exist in {target}: this halt created it. "
            "A running service reads another store or provider (check BREAKGLASS_STATE_DIR, "
            "BREAKGLASS_LOCAL__PATH, BREAKGLASS_PROVIDER): it was NOT halted by this.",
            err=True,
        )
        return
    verb = "resumed" if active else "halted"
    note = "" if ack.changed else " (it already was)"
    click.echo(
        f"{flag} {verb} through {safe(info['provider'])}{note}: readers are served "
        f"{_word(active)} ({safe(ack.served_detail)})"
    )
    click.echo(
        f"  changed: {target}; acknowledged at {info['acknowledged_at']}, "
        f"change {safe(ack.change_id)}"
    )
    if ack.created:
        click.echo(f"breakglass: note: {flag} did not exist in {target}: created it", err=True)


def _word(value: bool | None) -> str:  # noqa: FBT001
    return "unknown" if value is None else str(value).lower()


def ack_as_dict(ack: Acknowledgement, provider: str, *, actor: str, reason: str) -> dict[str, Any]:
    """The JSON shape of one acknowledged ``halt`` or ``resume``."""
    return {
        "flag": ack.flag_key,
        "active": ack.active,
        "provider": provider,
        "target": ack.target,
        "served": ack.served,
        "served_detail": ack.served_detail,
        "confirmed": ack.confirmed,
        "created": ack.created,
        "acknowledged_at": isoformat_ms(ack.acknowledged_at),
        "change_id": ack.change_id,
        "changed": ack.changed,
        "actor": actor,
        "reason": reason,
    }


def _fallback(bridge: Bridge | None) -> list[str]:
    """What a person can do when the command cannot halt: each vendor's dashboard, the kill switch."""
    steps = []
    for backend in bridge.backends if bridge is not None else []:
        url = getattr(backend.admin, "dashboard_url", None)
        if isinstance(url, str) and url:
            steps.append(f"turn the flag off by hand in {backend.name}'s dashboard: {url}")
    if find_spec("breakglass_killswitch") is not None:  # the second, independent halt
        steps.append(
            'use the kill switch: breakglass-killswitch halt --reason "..." '
            "(scales the inference service to zero, verified)"
        )
    steps.append("or stop the guarded service's processes themselves")
    return steps


def _not_changed(
    *,
    active: bool,
    fallback: list[str],
    as_json: bool,
    error: BreakglassError | None = None,
    ack: Acknowledgement | None = None,
    info: dict[str, Any] | None = None,
) -> NoReturn:
    """Say plainly that the change did not take effect, and what to do instead; exit 4 or 5."""
    verdict = "NOT RESUMED" if active else "NOT HALTED"
    if error is not None:
        why = safe(error)
    elif ack is not None and ack.served is None:
        why = (
            f"the change was acknowledged but what readers are served could not be confirmed "
            f"({safe(ack.served_detail)})"
        )
    else:
        served = _word(ack.served if ack else None)
        why = (
            f"the change was acknowledged but readers are still served {served} "
            f"({safe(ack.served_detail if ack else None)})"
        )
    code = EXIT_NOT_RESUMED if active else EXIT_NOT_HALTED
    if as_json:
        payload = {
            "ok": False,
            **(info or {"active": active}),
            "verdict": verdict,
            "error": error_object(type(error).__name__ if error else "NotServed", why, code),
            "fallback": [] if active else fallback,
        }
        click.echo(json.dumps(payload))
    else:
        click.echo(f"breakglass: {verdict}: {why}", err=True)
        if ack is not None and ack.target:
            click.echo(f"  changed: {safe(ack.target)}", err=True)
        for step in [] if active else fallback:
            click.echo(f"  fallback: {step}", err=True)
    sys.exit(code)


def _change_all(
    bridge: Bridge,
    *,
    active: bool,
    actor: str,
    reason: str,
    as_json: bool,
    on_done: Callable[[list[TargetResult]], None] | None = None,
) -> None:
    """Change every provider at once; a halt holds when one acknowledged (stop wins)."""
    try:
        results = bridge.change(active=active, actor=actor, reason=reason)
    finally:
        bridge.close()
    # A target counts only when its readers are served the asked-for value, not on its 2xx alone.
    acked = [r for r in results if r.ok]
    done = bool(acked) if not active else len(acked) == len(results)
    if done and on_done is not None:
        on_done(results)
    if as_json:
        info = {"flag": bridge.settings.flag_key, "active": active, "done": done, "actor": actor}
        click.echo(
            json.dumps({**info, "reason": reason, "targets": [r.to_dict() for r in results]})
        )
    else:
        for r in results:
            if r.ok and r.ack is not None:
                note = "" if r.ack.changed else " (it already was)"
                click.echo(
                    f"{r.target}: {'resumed' if active else 'halted'}{note} in "
                    f"{safe(r.ack.target)}; readers are served {_word(active)}; acknowledged at "
                    f"{isoformat_ms(r.ack.acknowledged_at)}, change {safe(r.ack.change_id)}"
                )
            elif r.ack is not None:
                click.echo(
                    f"{r.target}: NOT changed for readers: acknowledged, but they are served "
                    f"{_word(r.ack.served)} ({safe(r.ack.served_detail)})",
                    err=True,
                )
            else:
                click.echo(f"{r.target}: NOT changed: {safe(r.error)}", err=True)
        if not active and not done:
            click.echo(
                "breakglass: NOT HALTED: no provider serves false to readers after the change",
                err=True,
            )
            for step in _fallback(bridge):
                click.echo(f"  fallback: {step}", err=True)
        elif active and not done:
            click.echo("breakglass: NOT RESUMED everywhere; the system stays halted", err=True)
    sys.exit(0 if done else (EXIT_NOT_RESUMED if active else EXIT_NOT_HALTED))


def _not_blank(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The audit trail needs a who and a why: blank or control-only text is a usage error."""
    text = value.strip()
    if not text or not text.isprintable():
        raise click.BadParameter("must be printable text, not blank", param=param)
    return text


_actor_option = click.option(
    "--actor",
    default=default_actor,
    show_default="user@host",
    callback=_not_blank,
    help="Who is doing this.",
)
_reason_option = click.option(
    "--reason", required=True, callback=_not_blank, help="Why (kept in the audit trail)."
)


@main.command()
@_global_options
@_actor_option
@_reason_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def halt(ctx: _Context, actor: str, reason: str, *, as_json: bool) -> None:
    """Stop the system: set the flag false through the provider."""
    from breakglass.resume.cli_gate import record_cli_halt

    def opened(results: list[TargetResult]) -> None:
        # After the halt took effect: the suspension record never delays it.
        record_cli_halt(ctx.settings(), actor=actor, reason=reason, results=results)

    _change(ctx, active=False, actor=actor, reason=reason, as_json=as_json, on_done=opened)


@main.command()
@_global_options
@_actor_option
@_reason_option
@click.option(
    "--classification",
    type=click.Choice(["confirmed-harm", "precautionary", "drill"]),
    help="How the suspension closes (asked by the resumption gate when a policy exists).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def resume(
    ctx: _Context, actor: str, reason: str, classification: str | None, *, as_json: bool
) -> None:
    """Let the system run again: set the flag true through the provider.

    With a policy file, only once the resumption gate (checklist, conditions and
    approvals, given through breakglass serve) is satisfied.
    """
    from breakglass.resume.cli_gate import authorise, cli_gate, close

    try:
        gate = cli_gate(ctx.settings())
        if gate is not None and gate.store.open_suspension() is None and _never_set(ctx):
            # First start: nothing was ever halted, so there is no suspension to close.
            click.echo(
                "breakglass: the flag does not exist yet; creating it (first start)", err=True
            )
            gate = None
        missing = (
            authorise(gate, actor=actor, reason=reason, classification=classification)
            if gate is not None
            else []
        )
    except BreakglassError as exc:
        _not_changed(active=True, error=exc, fallback=[], as_json=as_json)
    if missing:
        click.echo("breakglass: resume refused by the resumption gate; missing:", err=True)
        for line in missing:
            click.echo(f"  - {safe(line)}", err=True)
        sys.exit(EXIT_REFUSED)

    def closed(results: list[TargetResult]) -> None:
        del results
        if gate is not None:
            close(gate, actor=actor, reason=reason)

    _change(ctx, active=True, actor=actor, reason=reason, as_json=as_json, on_done=closed)


def _never_set(ctx: _Context) -> bool:
    """Whether the flag does not exist at the provider (a first start, not a halt)."""
    with _open(ctx, read_only=True) as bridge:
        return bridge.engine.wait_for_confirmation(5.0).cause is Cause.FLAG_MISSING


@main.command()
@_global_options
# Bounded: --interval 0 drew the state as fast as the terminal took it (gigabytes a minute).
@click.option(
    "--interval",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0.05),
    help="Seconds between samples.",
)
@click.option(
    "--count",
    default=0,
    type=click.IntRange(min=0),
    help="Stop after this many samples (0: until Ctrl-C).",
)
@click.option(
    "--changes", "changes_only", is_flag=True, help="Show only the first state and changes."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (with 'changed').")
@click.pass_obj
def watch(ctx: _Context, interval: float, count: int, *, changes_only: bool, as_json: bool) -> None:
    """Show the live state and its age until interrupted.

    On a terminal the state is redrawn in place (a change starts a new block); in a pipe each
    sample is a line, its second column 'changed' when the state differs from the sample
    before. Colour only on a terminal, never with NO_COLOR.
    """
    from breakglass.stop_signals import StopSignals
    from breakglass.watch_view import WatchView

    view = WatchView(sys.stdout, _describe, as_json=as_json, changes_only=changes_only)
    try:
        # Ctrl-C and SIGTERM end the loop between samples, never as an exception raised inside
        # a lock the bridge's close then waits for; and they work where SIGINT came in ignored.
        with StopSignals() as stop, _open(ctx, read_only=True) as bridge:
            bridge.engine.wait_for_confirmation(min(5.0, interval * 4))
            sampled, changes = 0, LastChangeFollower(bridge.settings)
            while (count == 0 or sampled < count) and stop.received is None:
                info = state_as_dict(bridge.engine.state, bridge)
                info["last_change"] = changes.after(active=info["active"])
                view.show(isoformat_ms(SYSTEM_CLOCK.now()), info)
                sampled += 1
                if count == 0 or sampled < count:
                    stop.sleep(interval)
    except BreakglassError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON: name, package, version.")
def providers(*, as_json: bool) -> None:
    """List the installed provider adapters and the package that brings each."""
    found = provider_distributions()
    if as_json:
        click.echo(json.dumps([{"name": n, "package": p, "version": v} for n, p, v in found]))
        return
    for line in table(("NAME", "PACKAGE", "VERSION"), found):
        click.echo(line)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
# Ranges: --concurrency 0 ran a demo with no traffic and reported its failures as the product's.
@click.option(
    "--concurrency",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Clients sending requests.",
)
@click.option(
    "--work-ms",
    default=150,
    show_default=True,
    type=click.IntRange(min=0),
    help="Time one inference takes.",
)
@click.option(
    "--load-seconds",
    default=1.5,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Load before the halt.",
)
@click.option(
    "--max-halt-ms",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Fail when halting takes longer.",
)
@click.option(
    "--state-dir",
    "demo_dir",
    type=click.Path(file_okay=False),
    help="Where the demo's local store lives (default: a temporary directory).",
)
def demo(
    *,
    as_json: bool,
    concurrency: int,
    work_ms: int,
    load_seconds: float,
    max_halt_ms: float,
    demo_dir: Path | None,
) -> None:
    """Run the drill: a guarded sample service under load is halted, drained and resumed."""
    try:
        require_extras("demo", "demo")
    except BreakglassError as exc:
        _fail(exc)
    from breakglass.demo import DemoOptions, run_demo

    options = DemoOptions(
        concurrency=concurrency,
        work_ms=work_ms,
        load_seconds=load_seconds,
        max_halt_ms=max_halt_ms,
        state_dir=demo_dir,
    )
    report = run_demo(options, progress=None if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.summary())
    sys.exit(0 if report.passed else 1)


main.add_command(probe)
main.add_command(audit)
main.add_command(relay)
main.add_command(serve)
main.add_command(notify)
main.add_command(drill)
main.add_command(db)

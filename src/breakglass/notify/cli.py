"""``breakglass notify``: check the policy, send a test through the real chain, deliver, show status.

* ``notify check`` — validate the policy file and list who is told of what;
* ``notify test --group G`` — a clearly marked test through every channel of
  ``G`` (the drill uses it); exit 0 only when every channel has it;
* ``notify run`` — deliver the outbox (and escalate) until stopped, for a
  deployment without serve, or next to it;
* ``notify status SUSPENSION`` — per group: sent, delivered, acknowledged (an id
  the store has nothing of is an error).

Exit codes: 0 done, 1 an error or a channel that did not get it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol

import click

from breakglass.cli_errors import fail, json_flag, print_json
from breakglass.columns import table
from breakglass.errors import BreakglassError
from breakglass.notify.render import within_text
from breakglass.safe_text import safe
from breakglass.stop_signals import StopSignals

if TYPE_CHECKING:
    from breakglass.notify.config import Channel, Group, NotifyPolicy
    from breakglass.notify.notifier import GroupStatus, Notifier
    from breakglass.settings import Settings


class _HasSettings(Protocol):
    def settings(self) -> Settings: ...


class UnknownSuspensionError(BreakglassError):
    """``notify status`` was given a suspension id the notification store has nothing of."""


def _fail(exc: BreakglassError | str) -> NoReturn:
    fail(exc)


def _actor() -> str:
    from breakglass.cli import default_actor

    return default_actor()


def _policy(path: str | None) -> NotifyPolicy:
    from breakglass.policy import load_policy

    try:
        return load_policy(Path(path) if path else None).notify
    except BreakglassError as exc:
        _fail(exc)


def _notifier(ctx: click.Context, policy: NotifyPolicy) -> Notifier:
    from breakglass.audit.recorder import AuditRecorder
    from breakglass.notify.notifier import open_notifier

    obj: _HasSettings = ctx.obj
    try:
        settings = obj.settings()
        recorder = AuditRecorder.for_bridge(settings, "notify")
        return open_notifier(settings, policy, recorder=recorder)
    except BreakglassError as exc:
        _fail(exc)


_POLICY = click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False),
    help="The policy file (default $BREAKGLASS_POLICY_FILE, else breakglass-policy.toml).",
)


@click.group()
def notify() -> None:
    """The notification chain: who is told of a halt, how, and within which time."""


_OPSGENIE_ENDS = (
    "Opsgenie ends on 5 April 2027 (its REST API stops then): plan the move to "
    "Jira Service Management or PagerDuty (docs/notifications.md)"
)


@notify.command()
@_POLICY
@json_flag
def check(policy_path: str | None, *, as_json: bool) -> None:
    """Validate the policy file and list the groups, their conditions and channels."""
    policy = _policy(policy_path)
    warnings = [_OPSGENIE_ENDS] if any(c.type == "opsgenie" for c in _all_channels(policy)) else []
    if as_json:
        groups = [
            {
                "group": name,
                "kind": group.kind.value,
                "immediate": group.immediate,
                "ack_within": within_text(group.deadline),
                "when": group.when.model_dump(mode="json", exclude_defaults=True) or "always",
                "channels": _channel_names(policy, group),
            }
            for name, group in policy.groups.items()
        ]
        print_json({"ok": True, "valid": True, "groups": groups, "warnings": warnings})
        return
    if not policy.groups:
        click.echo("policy is valid; [notify] names no group: nobody is told of a halt")
        return
    for name, group in policy.groups.items():
        timeframe = "immediate" if group.immediate else f"within {within_text(group.deadline)}"
        when = group.when.model_dump(exclude_defaults=True) or "always"
        click.echo(
            f"{name} ({group.kind.value}): {timeframe}, ack within {within_text(group.deadline)}, "
            f"when {when}; channels: {', '.join(_channel_names(policy, group))}"
        )
    for warning in warnings:
        click.echo(f"warning: {warning}")
    click.echo("policy is valid")


def _channel_names(policy: NotifyPolicy, group: Group) -> list[str]:
    if group.kind.value == "deployers":  # every deployer's channels, named deployer/channel
        return [f"{d}/{c.id}" for d, dep in policy.deployers.items() for c in dep.channels]
    return [str(c.id) for c in group.channels]


def _all_channels(policy: NotifyPolicy) -> list[Channel]:
    found: list[Channel] = [c for d in policy.deployers.values() for c in d.channels]
    for group in policy.groups.values():
        found += [*group.channels, *group.escalation_channels]
    return found


def _wait(notifier: Notifier, suspension_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = notifier.outbox.notifications(suspension_id)
        if rows and all(r.state != "pending" for r in rows):
            return
        time.sleep(0.1)


@notify.command()
@_POLICY
@click.option(
    "--group",
    "groups",
    multiple=True,
    required=True,
    help="A group of the policy (repeat for several).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for delivery.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def test(
    ctx: click.Context,
    policy_path: str | None,
    groups: tuple[str, ...],
    wait_s: float,
    as_json: bool,  # noqa: FBT001 -- a click flag
) -> None:
    """Send a clearly marked test alert through every channel of each group."""
    policy = _policy(policy_path)
    unknown = [g for g in groups if g not in policy.groups]
    if unknown:
        _fail(
            f"no group named {', '.join(unknown)} in the policy (known: {', '.join(policy.groups) or 'none'})"
        )
    notifier = _notifier(ctx, policy)
    try:
        notifier.start()
        ids = [notifier.test(group, actor=_actor()) for group in groups]
        for suspension_id in ids:
            _wait(notifier, suspension_id, wait_s)
        results = [s for suspension_id in ids for s in notifier.status(suspension_id)]
    except BreakglassError as exc:
        _fail(exc)
    finally:
        notifier.close()
    _report(results, as_json=as_json)
    if any(c.state not in ("delivered", "accepted") for g in results for c in g.channels):
        sys.exit(1)


def _report(results: list[GroupStatus], *, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([g.as_dict() for g in results], indent=2))
        return
    words = {"delivered": "DELIVERED", "accepted": "ACCEPTED", "failed": "NOT DELIVERED"}
    rows = [
        (
            f"{group.group}/{c.channel}",
            c.type,
            words.get(c.state, "PENDING"),
            c.attempts,
            c.detail,
        )
        for group in results
        for c in group.channels
    ]
    for line in table(("CHANNEL", "TYPE", "STATE", "ATTEMPTS", "DETAIL"), rows):
        click.echo(line)


@notify.command()
@_POLICY
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="A JSON line when it delivers (store, pid) and one when it stops; failures as JSON.",
)
@click.pass_context
def run(ctx: click.Context, policy_path: str | None, *, as_json: bool) -> None:
    """Deliver the outbox and escalate overdue groups until stopped (SIGTERM or Ctrl-C)."""
    policy = _policy(policy_path)
    notifier = _notifier(ctx, policy)
    stop = StopSignals()
    notifier.start()
    store = notifier.outbox.store.location
    if as_json:
        print_json({"event": "delivering", "store": store, "pid": os.getpid()})
    else:
        click.echo(f"delivering notifications from {store}", err=True)
    try:
        with stop:
            stop.wait()
    finally:
        notifier.close()
    if as_json:
        print_json({"event": "stopped", "pid": os.getpid()})


@notify.command()
@_POLICY
@click.argument("suspension_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def status(ctx: click.Context, policy_path: str | None, suspension_id: str, as_json: bool) -> None:  # noqa: FBT001 -- a click flag
    """Per group: when it was sent, delivered and acknowledged, and each notification's state."""
    policy = _policy(policy_path)
    notifier = _notifier(ctx, policy)
    try:
        results = notifier.status(suspension_id)
        # A mistyped id must not read as "nobody was told"; a halt no group matched is known.
        if not results and not notifier.outbox.knows(suspension_id):
            raise UnknownSuspensionError(
                f"no suspension {suspension_id} is known to the notification store "
                f"{notifier.outbox.store.location}: check the id"
            )
    except BreakglassError as exc:
        _fail(exc)
    finally:
        notifier.close()
    if as_json:
        click.echo(json.dumps([g.as_dict() for g in results], indent=2))
        return
    if not results:
        click.echo(f"no notifications for {safe(suspension_id)}")
        return
    for g in results:
        ack = (
            f"acknowledged {g.acknowledged_at} by {safe(g.acknowledged_by or '')} ({g.acknowledged_via})"
            if g.acknowledged_at
            else f"not acknowledged (due {g.due_at}, {g.deadline})"
        )
        click.echo(
            f"{g.group}: sent {g.sent_at}, delivered {g.delivered_at}, {ack}; {g.undelivered} not delivered"
        )
    _report(results, as_json=False)

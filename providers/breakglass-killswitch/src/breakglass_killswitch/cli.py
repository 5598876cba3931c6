"""``breakglass-killswitch``: halt, resume, status, preflight, serve, tokens, RBAC, keys.

Exit codes: 0 done; 1 an error (one line, nothing changed that was not said);
2 a usage error; 3 NOT HALTED / NOT RESUMED (a target did not get there in time);
4 pre-flight found a risk; 5 resume refused (no valid authorisation).
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from breakglass_killswitch.config import load_config
from breakglass_killswitch.errors import KillswitchError, NothingHaltedError, ResumeRefused
from breakglass_killswitch.store import Store
from breakglass_killswitch.switch import Actor, Switch

EXIT_NOT_DONE = 3
EXIT_RISK = 4
EXIT_REFUSED = 5


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"breakglass-killswitch: {message}", err=True)
    sys.exit(code)


def _switch(config_path: Path) -> Switch:
    config = load_config(config_path)
    return Switch(config, Store(config.state_dir))


def _local_actor() -> Actor:
    # Locally, the identity is the OS account that could read the switch's credentials.
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor("user", f"{user}@{socket.gethostname()}")


@click.group()
@click.option(
    "--config",
    "config_path",
    envvar="BREAKGLASS_KILLSWITCH_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("killswitch.toml"),
    show_default=True,
    help="The switch's config file (or BREAKGLASS_KILLSWITCH_CONFIG).",
)
@click.pass_context
def main(ctx: click.Context, config_path: Path) -> None:
    """The second, independent halt: scale the inference service to zero, verified."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = config_path


def _emit(data: dict[str, Any], line: str, *, as_json: bool) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else line)


@main.command()
@click.option("--reason", required=True, help="Why (kept in the audit record).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def halt(config_path: Path, reason: str, *, as_json: bool) -> None:
    """Halt every target and wait until none serves (exit 3: NOT HALTED)."""
    try:
        switch = _switch(config_path)
        try:
            report = switch.halt(_local_actor(), reason)
        finally:
            switch.close()
    except KillswitchError as exc:
        _fail(f"NOT HALTED: {exc}", EXIT_NOT_DONE)
    if not as_json:
        for outcome in report.outcomes:
            mark = "ok " if outcome.ok else "FAILED"
            took = f" in {outcome.seconds:.1f} s" if outcome.seconds is not None else ""
            click.echo(f"  {mark} {outcome.target}: {outcome.error or outcome.detail}{took}")
            for note in outcome.notes:
                click.echo(f"       note: {note}")
    _emit(report.as_dict(), report.summary(), as_json=as_json)
    if not report.ok:
        click.echo(f"breakglass-killswitch: {report.summary()}", err=True)
        sys.exit(EXIT_NOT_DONE)


@main.command()
@click.option("--reason", required=True, help="Why (kept in the audit record).")
@click.option(
    "--authorisation",
    type=click.File("r"),
    help="A file (or - for stdin) holding a signed resume authorisation from the control plane.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def resume(config_path: Path, reason: str, authorisation: Any, *, as_json: bool) -> None:
    """Restore what the halt recorded; needs a signed authorisation or the configured approvals."""
    token = authorisation.read().strip() if authorisation is not None else None
    try:
        switch = _switch(config_path)
        try:
            report = switch.resume(_local_actor(), reason, token)
        finally:
            switch.close()
    except ResumeRefused as exc:
        for missing in exc.missing:
            click.echo(f"  missing: {missing}", err=True)
        _fail(str(exc), EXIT_REFUSED)
    except NothingHaltedError as exc:
        _fail(str(exc))
    except KillswitchError as exc:
        _fail(str(exc))
    _emit(report.as_dict(), report.summary(), as_json=as_json)
    if not report.ok:
        sys.exit(EXIT_NOT_DONE)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(config_path: Path, *, as_json: bool) -> None:
    """The open halt, if any, and each target's live state."""
    try:
        switch = _switch(config_path)
        try:
            info = switch.status()
        finally:
            switch.close()
    except KillswitchError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"switch {info['switch']}: {info['state']}")
    episode = info["episode"]
    if episode:
        click.echo(
            f"  halt {episode['id']} by {episode['opened_by']} at {episode['opened_at']}: {episode['reason']}"
        )
        click.echo(f"  approvals {len(episode['approvals'])} of {episode['approvals_required']}")
    for target in info["targets"]:
        rest = ", ".join(f"{k}={v}" for k, v in target.items() if k != "target")
        click.echo(f"  {target['target']}: {rest}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def preflight(config_path: Path, *, as_json: bool) -> None:
    """Find what would undo a halt (Argo CD self-heal, HPA from zero) or block it (exit 4 on a risk)."""
    try:
        switch = _switch(config_path)
        try:
            findings = switch.preflight()
        finally:
            switch.close()
    except KillswitchError as exc:
        _fail(str(exc))
    risky = [f for f in findings if f.severity in ("risk", "error")]
    if as_json:
        click.echo(
            json.dumps({"ok": not risky, "findings": [f.as_dict() for f in findings]}, indent=2)
        )
    else:
        for f in findings:
            click.echo(f"{f.severity.upper():8} {f.code}: {f.detail}")
        click.echo(
            f"pre-flight: {len(risky)} risks or errors, {len(findings) - len(risky)} handled or informational"
        )
    if risky:
        sys.exit(EXIT_RISK)


@main.command()
@click.option("--host", help="Listen address (default: serve.host in the config).")
@click.option("--port", type=int, help="Port (default: serve.port in the config).")
@click.pass_obj
def serve(config_path: Path, host: str | None, port: int | None) -> None:
    """Serve the HTTP API (see the README)."""
    import uvicorn

    from breakglass_killswitch.server import build_app

    try:
        switch = _switch(config_path)
        switch.prepare()  # a kill switch answers its first halt warm
    except KillswitchError as exc:
        _fail(str(exc))
    settings = switch.config.serve
    uvicorn.run(
        build_app(switch),
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level="info",
        timeout_keep_alive=5,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )


@main.group()
def token() -> None:
    """The switch's own API tokens (stored hashed, shown once)."""


@token.command("create")
@click.option("--name", required=True, help="Who holds it (the audit actor).")
@click.option("--role", type=click.Choice(["viewer", "halter", "approver"]), required=True)
@click.pass_obj
def token_create(config_path: Path, name: str, role: str) -> None:
    """Issue a token and print it once."""
    from breakglass_killswitch.tokens import create_token

    try:
        config = load_config(config_path)
        secret = create_token(Store(config.state_dir), name, role)
    except KillswitchError as exc:
        _fail(str(exc))
    click.echo(secret)
    click.echo(f"token {name!r} ({role}) created; it is shown only now", err=True)


@token.command("revoke")
@click.option("--name", required=True)
@click.pass_obj
def token_revoke(config_path: Path, name: str) -> None:
    """Revoke a token by name."""
    from breakglass_killswitch.audit import iso, now

    try:
        config = load_config(config_path)
        done = Store(config.state_dir).revoke_token(name, iso(now()))
    except KillswitchError as exc:
        _fail(str(exc))
    if not done:
        _fail(f"no live token named {name!r}")
    click.echo(f"token {name!r} revoked")


@token.command("list")
@click.pass_obj
def token_list(config_path: Path) -> None:
    """Names, roles and dates (never the tokens)."""
    try:
        config = load_config(config_path)
        rows = Store(config.state_dir).tokens()
    except KillswitchError as exc:
        _fail(str(exc))
    for row in rows:
        state = f"revoked {row.revoked_at}" if row.revoked_at else "live"
        click.echo(f"{row.name}\t{row.role}\tcreated {row.created_at}\t{state}")


@main.command()
@click.option("--service-account", default="breakglass-killswitch", show_default=True)
@click.option(
    "--namespace",
    "home",
    default="breakglass-killswitch",
    show_default=True,
    help="Where the ServiceAccount lives.",
)
@click.pass_obj
def rbac(config_path: Path, service_account: str, home: str) -> None:
    """Print the minimal RBAC (ServiceAccount, Roles, RoleBindings) for this config's targets."""
    from breakglass_killswitch.rbac import render_rbac

    try:
        config = load_config(config_path)
    except KillswitchError as exc:
        _fail(str(exc))
    click.echo(render_rbac(config, service_account, home), nl=False)


@main.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the private key (PEM, mode 0600).",
)
def keygen(out: Path) -> None:
    """Make an Ed25519 key pair for signing resume authorisations; print the public key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from breakglass_killswitch.authorisation import private_key_pem, public_key_text

    key = Ed25519PrivateKey.generate()
    try:
        out.touch(mode=0o600, exist_ok=False)
        out.write_bytes(private_key_pem(key))
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror}")
    click.echo(public_key_text(key.public_key()))


@main.command("sign-resume")
@click.option(
    "--key", "key_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True
)
@click.option("--switch", "switch_name", required=True, help="The switch's name.")
@click.option("--episode", required=True, help="The open halt's id (status shows it).")
@click.option("--approver", "approvers", multiple=True, required=True)
@click.option("--reason", required=True)
@click.option("--issuer", default="breakglass-killswitch sign-resume", show_default=True)
@click.option("--ttl", type=click.IntRange(1, 86400), default=300, show_default=True)
def sign_resume_cmd(
    key_path: Path,
    switch_name: str,
    episode: str,
    approvers: tuple[str, ...],
    reason: str,
    issuer: str,
    ttl: int,
) -> None:
    """Issue a signed resume authorisation (what the control plane does after its gate)."""
    from breakglass_killswitch.authorisation import load_private_key, sign_resume

    try:
        key = load_private_key(key_path.read_bytes())
    except KillswitchError as exc:
        _fail(str(exc))
    click.echo(
        sign_resume(
            key,
            switch=switch_name,
            episode=episode,
            issuer=issuer,
            approvers=approvers,
            reason=reason,
            ttl=ttl,
        )
    )

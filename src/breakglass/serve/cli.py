"""``breakglass serve``: the halt API and the console; ``token``: tokens; ``session``: sessions."""

from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING, Any, NoReturn

import click

from breakglass.cli_errors import fail, json_flag, print_json, wants_json
from breakglass.columns import table
from breakglass.errors import BreakglassError

if TYPE_CHECKING:
    from breakglass.serve.auth import TokenBook
    from breakglass.serve.revocations import SessionRevocations


def _fail(exc: BaseException | str) -> NoReturn:
    fail(exc, prefix="breakglass serve")


def _settings(ctx: click.Context) -> Any:
    from breakglass.settings import load_settings

    overrides = getattr(ctx.find_root().obj, "overrides", {})
    return load_settings(**overrides)


def _tokens(ctx: click.Context) -> TokenBook:
    from breakglass.serve.auth import TokenBook
    from breakglass.serve.runtime import open_store
    from breakglass.serve.settings import load_serve_settings

    settings = _settings(ctx)
    return TokenBook(open_store(settings, load_serve_settings(settings)))


@click.group(invoke_without_command=True)
@click.option("--host", help="Override BREAKGLASS_SERVE__HOST (default 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Override BREAKGLASS_SERVE__PORT (default 8470).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="A JSON line when it serves (URL, providers, pid); failures as JSON (also for a token "
    "subcommand).",
)
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, *, as_json: bool) -> None:
    """Run the halt API and the operator console (needs the 'serve' extra).

    On the first start with no admin token, one is made and printed once (on stderr).
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        import uvicorn

        from breakglass.serve.runtime import bootstrap_admin, build
        from breakglass.serve.settings import load_serve_settings
    except ImportError as exc:
        _fail(f"{exc.name} is missing: install breakglass[serve]")
    try:
        settings = _settings(ctx)
        overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
        serve_settings = load_serve_settings(settings, **overrides)
        server = build(settings, serve_settings)
    except BreakglassError as exc:
        _fail(exc)
    try:
        token = bootstrap_admin(server.services.tokens)
        if token is not None:
            click.echo(
                "breakglass serve: the first admin token (shown once, store it now):\n"
                f"  {token}\n"
                "Make named tokens per person with `breakglass serve token create`.",
                err=True,
            )
        where = f"http://{serve_settings.host}:{serve_settings.port}/"
        providers = server.bridge.name
        hub = server.services.control.hub

        class _Uvicorn(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                try:
                    await super().startup(sockets)
                except SystemExit:  # uvicorn logged why (the port is taken...) on stderr
                    _fail(f"did not start serving on {where} (the reason is logged above)")
                # Only now: a program waiting for this line may connect at once. The port is the
                # one bound (port 0 asks for any free one), so the line names where it listens.
                port = self.servers[0].sockets[0].getsockname()[1] if self.servers else None
                _announce(
                    f"http://{serve_settings.host}:{port}/" if port else where,
                    providers,
                    as_json=as_json,
                )

            def handle_exit(self, sig: int, frame: Any) -> None:
                hub.close()  # event streams never end by themselves: end them so shutdown is quick
                super().handle_exit(sig, frame)

        config = uvicorn.Config(
            server.app,
            host=serve_settings.host,
            port=serve_settings.port,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
        _Uvicorn(config).run()
    except BreakglassError as exc:
        _fail(exc)
    finally:
        server.close()


def _announce(where: str, providers: str, *, as_json: bool) -> None:
    if as_json:
        print_json({"event": "serving", "url": where, "providers": providers, "pid": os.getpid()})
    else:
        click.echo(
            f"breakglass serve: console and API on {where} (providers: {providers})", err=True
        )


@serve.group()
def token() -> None:
    """Named API tokens: create (shown once), list, revoke."""


@token.command("create")
@click.option("--name", required=True, help="Who or what holds it (a person, a pager bot).")
@click.option(
    "--role",
    # Role's names, written out so the CLI loads without serve's modules (a test keeps them equal).
    type=click.Choice(["reporter", "viewer", "halter", "approver", "admin"]),
    required=True,
    help="What it may do (reporter: a service's token for reader reports, never a person's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def token_create(ctx: click.Context, name: str, role: str, *, as_json: bool) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    from breakglass.cli import default_actor
    from breakglass.serve.auth import Role

    try:
        stored, text = _tokens(ctx).create(name, Role.parse(role), by=default_actor())
    except BreakglassError as exc:
        _fail(exc)
    if as_json or wants_json():
        click.echo(json.dumps({**stored.public(), "token": text}))
    else:
        click.echo(f"token {stored.name!r} ({stored.role}); shown once, store it now:\n{text}")


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def token_list(ctx: click.Context, *, as_json: bool) -> None:
    """List the tokens (never their secrets)."""
    try:
        tokens = _tokens(ctx).list()
    except BreakglassError as exc:
        _fail(exc)
    if as_json or wants_json():
        click.echo(json.dumps([t.public() for t in tokens]))
        return
    rows = [
        (
            t.name,
            t.role,
            t.created_at,
            t.created_by,
            f"revoked {t.revoked_at} by {t.revoked_by}" if t.revoked_at else "live",
        )
        for t in tokens
    ]
    for line in table(("NAME", "ROLE", "CREATED", "BY", "STATE"), rows):
        click.echo(line)


@token.command("revoke")
@click.argument("name")
@json_flag
@click.pass_context
def token_revoke(ctx: click.Context, name: str, *, as_json: bool) -> None:
    """Revoke the token called NAME (every replica stops accepting it within seconds)."""
    from breakglass.cli import default_actor

    try:
        done = _tokens(ctx).revoke(name, by=default_actor())
    except BreakglassError as exc:
        _fail(exc)
    if not done:
        _fail(f"no live token called {name!r}")
    if as_json or wants_json():
        print_json({"ok": True, "name": name, "revoked": True})
        return
    click.echo(f"token {name!r} revoked")


@serve.group()
def session() -> None:
    """Console sessions: end a person's sessions on every replica, list who was ended."""


def _revocations(ctx: click.Context) -> SessionRevocations:
    from breakglass.serve.revocations import SessionRevocations
    from breakglass.serve.runtime import open_store
    from breakglass.serve.settings import load_serve_settings

    settings = _settings(ctx)
    return SessionRevocations(open_store(settings, load_serve_settings(settings)))


@session.command("revoke")
@click.argument("person")
@click.option("--reason", default="", help="Why (kept in the store).")
@json_flag
@click.pass_context
def session_revoke(ctx: click.Context, person: str, reason: str, *, as_json: bool) -> None:
    """End every console session of PERSON (subject or e-mail) on every replica within seconds.

    API tokens are not touched (revoke those with `token revoke`); with single sign-on, also
    remove the person's role at the identity provider, or they can log in again.
    """
    from breakglass.cli import default_actor

    try:
        done = _revocations(ctx).revoke(person, by=default_actor(), reason=reason)
    except BreakglassError as exc:
        _fail(exc)
    if as_json or wants_json():
        print_json(done.public())
        return
    click.echo(f"console sessions of {done.person!r} ended (generation {done.generation})")


@session.command("revocations")
@json_flag
@click.pass_context
def session_revocations(ctx: click.Context, *, as_json: bool) -> None:
    """List whose console sessions were ended, by whom, when."""
    try:
        listed = _revocations(ctx).list()
    except BreakglassError as exc:
        _fail(exc)
    if as_json or wants_json():
        print_json([r.public() for r in listed])
        return
    rows = [(r.person, str(r.generation), r.revoked_at, r.revoked_by, r.reason) for r in listed]
    for line in table(("PERSON", "GENERATION", "LAST", "BY", "REASON"), rows):
        click.echo(line)

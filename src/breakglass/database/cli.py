"""``breakglass db migrate``: every table breakglass keeps, and the runtime roles' grants.

Run once per release as the database owner. The audit database
(``BREAKGLASS_AUDIT__DATABASE_URL``) gets the audit chain and the notification
tables; serve's (``BREAKGLASS_SERVE__DATABASE_URL``, often the same one) gets
serve's, the resume gate's and the hold queue's. ``--role`` then gives a role
exactly what :mod:`breakglass.database.grants` lists, and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import click

from breakglass.cli_errors import fail, json_flag, print_json
from breakglass.errors import BreakglassError, ConfigurationError
from breakglass.safe_text import safe

if TYPE_CHECKING:
    from breakglass.settings import Settings


class _HasSettings(Protocol):
    def settings(self) -> Settings: ...


@click.group()
def db() -> None:
    """PostgreSQL: create every table breakglass keeps, and grant runtime roles what they need."""


@db.command()
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="ROLE[:COMPONENT,...]",
    help="Grant this existing role exactly what the components need (default all of: "
    "audit, notify, serve, hold); any other privilege it has on these tables is revoked. "
    "Repeatable.",
)
@json_flag
@click.pass_obj
def migrate(ctx: _HasSettings, roles: tuple[str, ...], *, as_json: bool) -> None:
    """Create or upgrade every table (idempotent), as the owner; then grant the runtime roles."""
    from breakglass.audit.store import open_audit_store
    from breakglass.database.grants import AUDIT_DB, SERVE_DB, parse_role
    from breakglass.notify.outbox import Outbox
    from breakglass.serve.settings import load_serve_settings
    from breakglass.serve.store import open_serve_store

    lines: list[str] = []
    report: dict[str, Any] = {"ok": True, "roles": []}
    try:
        wanted = [parse_role(spec) for spec in roles]
        settings = ctx.settings()
        serve = load_serve_settings(settings)
        audit_store = open_audit_store(settings)
        serve_store = open_serve_store(serve.sqlite_path(settings), serve.database_url)
        stores: dict[str, Any] = {AUDIT_DB: audit_store, SERVE_DB: serve_store}
        try:
            version = audit_store.migrate()
            notify = Outbox(audit_store).migrate()
            lines.append(
                f"audit database {safe(audit_store.location)}: audit schema {version}, "
                f"notification schema {notify}"
            )
            serve_store.migrate()
            lines.append(f"serve database {safe(serve_store.location)}: tables ready")
            report["audit"] = {
                "location": audit_store.location,
                "schema_version": version,
                "notify_schema_version": notify,
            }
            report["serve"] = {"location": serve_store.location}
            if wanted and not any(hasattr(s, "grant") for s in stores.values()):
                raise ConfigurationError(
                    "--role is for PostgreSQL: set BREAKGLASS_AUDIT__DATABASE_URL and/or "
                    "BREAKGLASS_SERVE__DATABASE_URL (a SQLite store is guarded by file permissions)"
                )
            for role, names in wanted:
                done = _grant(stores, role, names, lines)
                lines.append(f"role {safe(role)}: granted {', '.join(done) or 'nothing'}")
                report["roles"].append({"role": role, "granted": done})
        finally:
            audit_store.close()
            serve_store.close()
    except BreakglassError as exc:
        fail(exc)
    if as_json:
        print_json(report)
        return
    for line in lines:
        click.echo(line)


def _grant(
    stores: dict[str, Any], role: str, names: tuple[str, ...], lines: list[str]
) -> list[str]:
    """Grant ``role`` the components ``names`` in each PostgreSQL store; the components granted."""
    from breakglass.database.grants import NAMES, tables_of

    done: list[str] = []
    for database, store in stores.items():
        tables = tables_of(names, database)
        if not hasattr(store, "grant"):
            if tables:
                lines.append(
                    f"role {safe(role)}: nothing granted in the {database} store "
                    f"{safe(store.location)} (SQLite: guard it with file permissions)"
                )
            continue
        # Even with nothing to grant here: what the role had here before is revoked.
        store.grant(role, tables, revoke=tables_of(NAMES, database))
        done += [n for n in names if tables_of([n], database)]
    return done

"""What the runtime role may do in PostgreSQL: every table breakglass keeps, and its grants.

The database owner creates the tables (``breakglass db migrate``); the role
serve, notify, the resume gate and the hold queue run as gets only the
statements their stores issue. Records that are evidence (the audit chain,
delivery attempts, acknowledgements) get SELECT and INSERT only. A row whose
state genuinely moves (an outbox row's delivery, a suspension being closed)
gets UPDATE on exactly the columns that move, so who opened a suspension and
why, or what a notification said, cannot be rewritten. Nothing gets
TRUNCATE, REFERENCES, TRIGGER, DDL or ownership; only idempotency keys and
failed logins, which expire, may be deleted.

This table is the one source of truth: the grants are applied from it, a
permission error is explained from it, and docs/deployment.md prints it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

AUDIT_DB = "audit"
"""The database ``BREAKGLASS_AUDIT__DATABASE_URL`` names (audit chain and notifications)."""
SERVE_DB = "serve"
"""The database ``BREAKGLASS_SERVE__DATABASE_URL`` names (serve, resume gate, hold queue)."""


@dataclass(frozen=True, slots=True)
class TableGrant:
    """What the runtime role may do to one table.

    ``privileges``: table-wide (SELECT, INSERT, DELETE). ``update``: the only
    columns an UPDATE may set. ``sequence``: a ``BIGSERIAL``'s sequence, which
    an INSERT draws from (USAGE). ``evidence``: rows are never changed nor removed.
    """

    table: str
    privileges: tuple[str, ...]
    update: tuple[str, ...] = ()
    sequence: str | None = None
    evidence: bool = False
    why: str = ""

    def describe(self) -> str:
        """``SELECT, INSERT, UPDATE (a, b)``: the grant as the docs show it."""
        parts = list(self.privileges)
        if self.update:
            parts.append(f"UPDATE ({', '.join(self.update)})")
        if self.sequence:
            parts.append(f"USAGE on {self.sequence}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Component:
    """A part of breakglass and the tables it keeps in one of the two databases."""

    name: str
    database: str
    tables: tuple[TableGrant, ...]
    description: str


_READ_APPEND = ("SELECT", "INSERT")

COMPONENTS: tuple[Component, ...] = (
    Component(
        "audit",
        AUDIT_DB,
        (
            TableGrant("audit_schema_version", ("SELECT",), why="checks the schema is current"),
            TableGrant(
                "audit_records",
                _READ_APPEND,
                evidence=True,
                why="the hash-chained history: halts, resumes, suspension records, drills",
            ),
            TableGrant(
                "audit_exports",
                _READ_APPEND,
                evidence=True,
                why="the export log",
            ),
            TableGrant(
                "audit_problems",
                _READ_APPEND,
                sequence="audit_problems_seq_seq",
                evidence=True,
                why="malformed or conflicting vendor entries",
            ),
            TableGrant(
                "audit_cursors",
                _READ_APPEND,
                update=("cursor", "updated_at"),
                why="where the next pull resumes",
            ),
        ),
        "the audit chain: pull, export, and every process that records a halt or resume",
    ),
    Component(
        "notify",
        AUDIT_DB,
        (
            TableGrant("notify_schema_version", ("SELECT",), why="checks the schema is current"),
            TableGrant(
                "notify_outbox",
                _READ_APPEND,
                update=(
                    "state",
                    "attempts",
                    "next_attempt_at",
                    "lease_until",
                    "leased_by",
                    "first_attempt_at",
                    "done_at",
                    "last_status",
                    "last_detail",
                    "response_id",
                ),
                why="a row's delivery state moves; what it says and to whom does not",
            ),
            TableGrant(
                "notify_attempts",
                _READ_APPEND,
                sequence="notify_attempts_seq_seq",
                evidence=True,
                why="every delivery attempt",
            ),
            TableGrant(
                "notify_deadlines",
                _READ_APPEND,
                update=("state", "escalated_at"),
                why="acknowledged, escalated or closed",
            ),
            TableGrant(
                "notify_acks", _READ_APPEND, evidence=True, why="who acknowledged, how, when"
            ),
            TableGrant(
                "notify_events", _READ_APPEND, evidence=True, why="halts and resumes notified"
            ),
        ),
        "notifications: outbox, attempts, deadlines, acknowledgements",
    ),
    Component(
        "serve",
        SERVE_DB,
        (
            TableGrant("serve_meta", _READ_APPEND, why="the console's session key, made once"),
            TableGrant(
                "serve_tokens",
                _READ_APPEND,
                update=("revoked_at", "revoked_by"),
                why="API tokens (hashed); a token is only ever revoked",
            ),
            TableGrant(
                "serve_idempotency",
                ("SELECT", "INSERT", "DELETE"),
                update=("status", "body"),
                why="Idempotency-Key answers, forgotten after a day",
            ),
            TableGrant(
                "serve_login_failures",
                ("SELECT", "INSERT", "DELETE"),
                why="failed logins per address, shared by replicas, forgotten after the window",
            ),
            TableGrant(
                "serve_session_revocations",
                _READ_APPEND,
                update=("generation", "revoked_at", "revoked_by", "reason"),
                why="console sessions ended: a person's by an admin, one by its logout; never removed",
            ),
            TableGrant(
                "serve_suspensions",
                _READ_APPEND,
                update=(
                    "halts",
                    "targets",
                    "closed_at",
                    "closed_by",
                    "close_reason",
                    "open_marker",
                ),
                why="halts join, targets report, a resume closes; who opened it and why stay",
            ),
            TableGrant(
                "serve_suspension_entries",
                _READ_APPEND,
                update=("at", "data"),
                why="the resume gate: checklist ticks and conditions are re-done in place",
            ),
        ),
        "serve and the resume gate: tokens, idempotency keys, failed logins, session revocations, "
        "suspensions and their entries",
    ),
    Component(
        "hold",
        SERVE_DB,
        (
            TableGrant(
                "held_decisions",
                _READ_APPEND,
                update=("state", "reviewed_by", "reviewed_at", "review_reason", "delivered_at"),
                why="reviewed once, delivered once; the decision itself stays",
            ),
        ),
        "the hold queue: decisions made while halted, reviewed through serve",
    ),
)

NAMES = tuple(c.name for c in COMPONENTS)


def component(name: str) -> Component:
    """The component called ``name``."""
    for c in COMPONENTS:
        if c.name == name:
            return c
    raise ConfigurationError(f"no component {name!r}: choose from {', '.join(NAMES)}")


def tables_of(names: Iterable[str], database: str | None = None) -> list[TableGrant]:
    """The tables of the named components (those in ``database`` only, when given)."""
    return [
        t
        for c in map(component, names)
        if database is None or c.database == database
        for t in c.tables
    ]


def parse_role(spec: str) -> tuple[str, tuple[str, ...]]:
    """``name`` (every component) or ``name:serve,hold`` -> ``(name, components)``."""
    role, _, wanted = spec.partition(":")
    if not role.strip():
        raise ConfigurationError(f"--role {spec!r}: name a role, e.g. breakglass_runtime")
    names = tuple(n.strip() for n in wanted.split(",") if n.strip()) if wanted else NAMES
    for name in names:
        component(name)
    return role.strip(), names


# ---------------------------------------------------------------------- applying


def grant_statements(
    role: str, tables: Sequence[TableGrant], *, revoke: Sequence[TableGrant] = ()
) -> list[Any]:
    """REVOKE everything on ``tables`` and ``revoke`` from ``role``, then GRANT exactly ``tables``'.

    Revoking first makes a re-run exact: a privilege granted by hand, or by an
    older breakglass, or for a component no longer asked for, does not survive it.
    """
    from psycopg import sql

    who = sql.Identifier(role)
    out: list[Any] = []
    for t in revoke:
        if t not in tables:
            out.append(
                sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(sql.Identifier(t.table), who)
            )
            if t.sequence:
                seq = sql.Identifier(t.sequence)
                out.append(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(seq, who))
    for t in tables:
        name = sql.Identifier(t.table)
        # Revoking a table's privileges revokes its columns' too.
        out.append(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(name, who))
        out.append(
            sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in t.privileges), name, who
            )
        )
        if t.update:
            out.append(
                sql.SQL("GRANT UPDATE ({}) ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, t.update)), name, who
                )
            )
        if t.sequence:
            seq = sql.Identifier(t.sequence)
            out.append(sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(seq, who))
            out.append(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(seq, who))
    return out


# ---------------------------------------------------------------------- explaining

_DENIED = re.compile(r'permission denied for (?:table|relation|sequence) "?([A-Za-z_][\w]*)"?')


@dataclass(frozen=True, slots=True)
class Missing:
    """A privilege the connected role lacks."""

    role: str
    table: str
    privilege: str

    def __str__(self) -> str:
        return f"role {self.role} lacks {self.privilege} on {self.table}"


def missing(cur: Any, tables: Sequence[TableGrant]) -> list[Missing]:
    """What the connected role lacks of ``tables``' grants (tables that do not exist are skipped).

    ``cur``: a psycopg cursor on a usable connection (not inside a failed transaction).
    """
    cur.execute("SELECT current_user")
    role = str(cur.fetchone()[0])
    found: list[Missing] = []
    for t in tables:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (t.table,))
        if not cur.fetchone()[0]:
            continue
        for privilege in t.privileges:
            cur.execute("SELECT has_table_privilege(%s, %s)", (t.table, privilege))
            if not cur.fetchone()[0]:
                found.append(Missing(role, t.table, privilege))
        lacking = []
        for column in t.update:
            cur.execute("SELECT has_column_privilege(%s, %s, 'UPDATE')", (t.table, column))
            if not cur.fetchone()[0]:
                lacking.append(column)
        if lacking:
            found.append(Missing(role, t.table, f"UPDATE ({', '.join(lacking)})"))
        if t.sequence:
            cur.execute("SELECT has_sequence_privilege(%s, 'USAGE')", (t.sequence,))
            if not cur.fetchone()[0]:
                found.append(Missing(role, t.sequence, "USAGE"))
    return found


def explain(cur: Any, message: str, database: str) -> str | None:
    """One line naming what the role lacks, for a "permission denied" ``message``; else ``None``.

    The table the server named is checked first; when it names none (or the
    denial was on a table outside this list), every table of ``database`` is.
    """
    known = tables_of(NAMES, database)
    hit = _DENIED.search(message)
    name = hit.group(1) if hit else None
    named = [t for t in known if name in (t.table, t.sequence)]
    return sentence(missing(cur, named) or missing(cur, known))


def sentence(lacking: Sequence[Missing]) -> str | None:
    """One line: the first privilege lacking, how many more, and the command that grants them."""
    if not lacking:
        return None
    first = lacking[0]
    more = f" (and {len(lacking) - 1} more)" if len(lacking) > 1 else ""
    return (
        f"{first}{more}: the database owner grants it with "
        f"`breakglass db migrate --role {first.role}`"
    )


def is_denied(message: str) -> bool:
    """Whether a 42501 error is a missing grant (rather than an append-only trigger's refusal)."""
    return message.startswith("permission denied")

"""The switch's own store (SQLite): what it recorded before halting, its audit records, its tokens.

The record of a target's state is written *before* the target is touched, so a
switch killed half-way through a halt still knows what to restore. One
connection per call keeps it safe across threads and processes (WAL mode).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass_killswitch.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY,
    opened_at TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    closed_at TEXT,
    closed_by TEXT
);
CREATE TABLE IF NOT EXISTS recorded (
    episode TEXT NOT NULL REFERENCES episodes(id),
    target TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (episode, target)
);
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS approvals (
    episode TEXT NOT NULL,
    approver TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (episode, approver)
);
CREATE TABLE IF NOT EXISTS used_authorisations (jti TEXT PRIMARY KEY, at TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Episode:
    """One halt, from the first halt request to the authorised resume."""

    id: str
    opened_at: str
    opened_by: str
    reason: str
    closed_at: str | None = None
    closed_by: str | None = None


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A named API token (its digest only; the token itself is never stored)."""

    name: str
    role: str
    created_at: str
    revoked_at: str | None


class Store:
    """The SQLite file ``<state_dir>/killswitch.db``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "killswitch.db"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)",
                    (secrets.token_hex(6),),
                )
            finally:
                db.close()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the switch's store {self.path}: {exc}") from None
        self.store_id = self._one("SELECT value FROM meta WHERE key = 'store_id'", ())[0]

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the switch's store {self.path}: {exc}") from None
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise StoreError(f"the switch's store {self.path} failed: {exc}") from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def _one(self, sql: str, args: tuple[Any, ...]) -> Any:
        with self._connect() as db:
            return db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with self._connect() as db:
            return db.execute(sql, args).fetchall()

    # ------------------------------------------------------------ episodes and records

    def open_episode(self) -> Episode | None:
        """The halt that has not been resumed yet, if any."""
        row = self._one(
            "SELECT id, opened_at, opened_by, reason, closed_at, closed_by FROM episodes "
            "WHERE closed_at IS NULL ORDER BY opened_at DESC LIMIT 1",
            (),
        )
        return Episode(*row) if row else None

    def last_episode(self) -> Episode | None:
        """The latest halt, open or closed."""
        row = self._one(
            "SELECT id, opened_at, opened_by, reason, closed_at, closed_by FROM episodes "
            "ORDER BY opened_at DESC LIMIT 1",
            (),
        )
        return Episode(*row) if row else None

    def begin_episode(self, opened_at: str, opened_by: str, reason: str) -> tuple[Episode, bool]:
        """The open halt, or a new one (``True``); two halts racing end up in the same episode."""
        with self._connect() as db:
            row = db.execute(
                "SELECT id, opened_at, opened_by, reason, closed_at, closed_by FROM episodes "
                "WHERE closed_at IS NULL ORDER BY opened_at DESC LIMIT 1"
            ).fetchone()
            if row:
                return Episode(*row), False
            episode = Episode(f"h-{secrets.token_hex(8)}", opened_at, opened_by, reason)
            db.execute(
                "INSERT INTO episodes (id, opened_at, opened_by, reason) VALUES (?, ?, ?, ?)",
                (episode.id, opened_at, opened_by, reason),
            )
            return episode, True

    def close_episode(self, episode: str, closed_at: str, closed_by: str) -> None:
        """Mark the halt resumed."""
        with self._connect() as db:
            db.execute(
                "UPDATE episodes SET closed_at = ?, closed_by = ? WHERE id = ? AND closed_at IS NULL",
                (closed_at, closed_by, episode),
            )

    def record(self, episode: str, target: str, data: dict[str, Any]) -> dict[str, Any]:
        """Keep a target's state before the halt; the first record of an episode wins."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO recorded (episode, target, data) VALUES (?, ?, ?)",
                (episode, target, json.dumps(data, sort_keys=True)),
            )
            row = db.execute(
                "SELECT data FROM recorded WHERE episode = ? AND target = ?", (episode, target)
            ).fetchone()
        result: dict[str, Any] = json.loads(row[0])
        return result

    def recorded(self, episode: str) -> dict[str, dict[str, Any]]:
        """Every target recorded in an episode, by target key."""
        rows = self._all("SELECT target, data FROM recorded WHERE episode = ?", (episode,))
        return {target: json.loads(data) for target, data in rows}

    # ------------------------------------------------------------ audit

    def append_audit(self, build: Any) -> dict[str, Any]:
        """Append a record built by ``build(seq)`` (the sequence number is its id)."""
        with self._connect() as db:
            seq = db.execute("INSERT INTO audit (record) VALUES ('{}')").lastrowid
            record: dict[str, Any] = build(seq)
            db.execute(
                "UPDATE audit SET record = ? WHERE seq = ?",
                (json.dumps(record, sort_keys=True, ensure_ascii=False), seq),
            )
        return record

    def audit_after(self, after: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Audit records with a sequence number above ``after``, oldest first."""
        rows = self._all(
            "SELECT seq, record FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        )
        return [(seq, json.loads(text)) for seq, text in rows]

    # ------------------------------------------------------------ approvals and authorisations

    def approve(self, episode: str, approver: str, reason: str, at: str) -> bool:
        """Record an approval; ``False`` when this approver had already approved."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO approvals (episode, approver, reason, at) VALUES (?, ?, ?, ?)",
                (episode, approver, reason, at),
            )
            return cursor.rowcount == 1

    def approvals(self, episode: str) -> list[tuple[str, str, str]]:
        """(approver, reason, at) for an episode."""
        return [
            (a, r, t)
            for a, r, t in self._all(
                "SELECT approver, reason, at FROM approvals WHERE episode = ? ORDER BY at",
                (episode,),
            )
        ]

    def use_authorisation(self, jti: str, at: str) -> bool:
        """Spend a signed authorisation's id; ``False`` when it was spent before (a replay)."""
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO used_authorisations (jti, at) VALUES (?, ?)", (jti, at)
            )
            return cursor.rowcount == 1

    # ------------------------------------------------------------ tokens

    def add_token(self, name: str, role: str, digest: str, at: str) -> None:
        """Store a token's digest under its name (a name is used once)."""
        with self._connect() as db:
            exists = db.execute("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone()
            if exists:
                raise StoreError(f"a token named {name!r} exists already")
            db.execute(
                "INSERT INTO tokens (name, role, digest, created_at) VALUES (?, ?, ?, ?)",
                (name, role, digest, at),
            )

    def revoke_token(self, name: str, at: str) -> bool:
        """Revoke a token by name; ``False`` when no live token has that name."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (at, name),
            )
            return cursor.rowcount == 1

    def token_by_digest(self, digest: str) -> TokenRow | None:
        """The live token with this digest."""
        row = self._one(
            "SELECT name, role, created_at, revoked_at FROM tokens "
            "WHERE digest = ? AND revoked_at IS NULL",
            (digest,),
        )
        return TokenRow(*row) if row else None

    def tokens(self) -> list[TokenRow]:
        """Every token, revoked ones included."""
        return [
            TokenRow(*row)
            for row in self._all(
                "SELECT name, role, created_at, revoked_at FROM tokens ORDER BY name", ()
            )
        ]

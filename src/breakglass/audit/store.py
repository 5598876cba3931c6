"""The audit store: what every backend (SQLite, PostgreSQL) offers, and how to open one.

Records are unique by ``id`` (``<provider>:<vendor_event_id>``): storing a
record twice keeps the first copy. Each :meth:`AuditStore.save` is one
transaction, and the pull cursor it is given is stored in that same
transaction, so a pull killed at any moment loses and duplicates nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from breakglass.clock import isoformat_ms

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from datetime import datetime

    from breakglass.audit.codec import StoredRecord
    from breakglass.audit.settings import AuditSettings
    from breakglass.errors import AuditStoreError
    from breakglass.settings import Settings


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which records to read; every filter is optional and they combine with AND.

    Attributes:
        providers: Keep records of these providers (any when empty).
        flags: Keep records of these flag keys (any when empty).
        environments: Keep records of these environments (any when empty).
        since: Keep records that occurred at or after this time (inclusive).
        until: Keep records that occurred before this time (exclusive), so
            ``--until T`` and a later ``--since T`` tile without overlap.
    """

    providers: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def describe(self) -> dict[str, Any]:
        """The filters as JSON-ready data (for an export's manifest)."""
        return {
            "provider": sorted(self.providers),
            "flag": sorted(self.flags),
            "environment": sorted(self.environments),
            "since": isoformat_ms(self.since) if self.since else None,
            "until": isoformat_ms(self.until) if self.until else None,
        }

    def where(self, placeholder: str, time_placeholder: str | None = None) -> tuple[str, list[Any]]:
        """A SQL ``WHERE`` clause (or ``""``) and its parameters.

        Args:
            placeholder: The driver's parameter mark (``?`` or ``%s``).
            time_placeholder: The mark for a time, when it needs a cast.
        """
        time_mark = time_placeholder or placeholder
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (
            ("provider", self.providers),
            ("flag_key", self.flags),
            ("environment", self.environments),
        ):
            if values:
                clauses.append(f"{column} IN ({', '.join([placeholder] * len(values))})")
                params.extend(values)
        if self.since is not None:
            clauses.append(f"occurred_at >= {time_mark}")
            params.append(isoformat_ms(self.since))
        if self.until is not None:
            clauses.append(f"occurred_at < {time_mark}")
            params.append(isoformat_ms(self.until))
        return (" WHERE " + " AND ".join(clauses) if clauses else "", params)


CHAIN_COLUMNS = ("seq", "prev_hash", "hash")
"""The store's chain, after the record's columns: insert order, the previous record's hash, its own."""


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One export in the store's export log (``audit_exports``).

    Attributes:
        seq: 1 for the store's first export, then 2, 3, ...
        export_hash: The export's manifest hash.
        exported_at: When it was made (RFC 3339).
        manifest: The manifest line as written (canonical JSON).
        signature: The signature line, when the export was signed.
    """

    seq: int
    export_hash: str
    exported_at: str
    manifest: str
    signature: str | None


def link(canonicals: Iterable[str], head: tuple[int, bytes] | None) -> list[tuple[int, str, str]]:
    """``(seq, prev_hash, hash)`` for records that continue the store's chain after ``head``.

    ``head`` is the last stored ``(seq, hash)`` (``None``: an empty store). The
    hash is the one an export line of the record would carry after a line of
    hash ``prev_hash`` (:func:`breakglass.audit.chain.chain_record`), so a
    store-order export reproduces the store's hashes.
    """
    from breakglass.audit.chain import chain_record, genesis

    seq, prev = head if head is not None else (0, genesis())
    links: list[tuple[int, str, str]] = []
    for canonical in canonicals:
        seq += 1
        _, digest, _ = chain_record(canonical.encode(), prev)
        links.append((seq, prev.decode(), digest.decode()))
        prev = digest
    return links


def linked_rows(
    records: Sequence[StoredRecord], head: tuple[int, bytes] | None
) -> list[tuple[Any, ...]]:
    """``records`` with their chain columns (:data:`CHAIN_COLUMNS`) appended."""
    links = link((r.canonical for r in records), head)
    return [(*r, *chain) for r, chain in zip(records, links, strict=True)]


@dataclass(frozen=True, slots=True)
class CursorUpdate:
    """Where a provider's next pull resumes, stored with the records it covers."""

    provider: str
    flag_key: str
    cursor: str


@dataclass(frozen=True, slots=True)
class Problem:
    """A vendor entry that could not be kept (kept in ``audit_problems``, never dropped silently)."""

    provider: str
    flag_key: str
    detail: str
    detected_at: datetime


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What one :meth:`AuditStore.save` did.

    Attributes:
        inserted: Records newly stored.
        duplicates: Records already stored with the same content (ignored).
        conflicts: Ids already stored with *different* content: the earlier
            copy is kept and the clash is recorded as a problem.
    """

    inserted: int
    duplicates: int
    conflicts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ProviderSummary:
    """Per provider and flag: how much is stored and where the next pull resumes."""

    provider: str
    flag_key: str
    records: int
    first_occurred_at: str | None
    last_occurred_at: str | None
    cursor: str | None


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """What ``breakglass audit status`` shows."""

    location: str
    schema_version: int
    records: int
    problems: int
    providers: list[ProviderSummary]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "location": self.location,
            "schema_version": self.schema_version,
            "records": self.records,
            "problems": self.problems,
            "providers": [
                {
                    "provider": p.provider,
                    "flag_key": p.flag_key,
                    "records": p.records,
                    "first_occurred_at": p.first_occurred_at,
                    "last_occurred_at": p.last_occurred_at,
                    "cursor": p.cursor,
                }
                for p in self.providers
            ],
        }


class AuditStore(Protocol):
    """**Protocol**: where audit records, pull cursors and problems are kept.

    Implemented by :class:`breakglass.audit.sqlite.SqliteAuditStore` and
    :class:`breakglass.audit.postgres.PostgresAuditStore`; called by the pull,
    the export and the bridge's recorder. Every method raises
    :class:`breakglass.errors.AuditStoreError` when the store cannot be used;
    the first call migrates the schema.
    """

    @property
    def location(self) -> str:
        """The file, or ``host/database``, for people (never a password)."""
        ...

    def migrate(self) -> int:
        """Bring the schema to the latest version; return that version."""
        ...

    def get_cursor(self, provider: str, flag_key: str) -> str | None:
        """Where the next pull of ``provider`` for ``flag_key`` resumes (``None``: from the start)."""
        ...

    def save(
        self,
        records: Sequence[StoredRecord],
        *,
        cursor: CursorUpdate | None = None,
        problems: Sequence[Problem] = (),
    ) -> SaveResult:
        """Store ``records`` (unique by id), ``problems`` and ``cursor`` in one transaction."""
        ...

    def iter_canonical(self, query: AuditQuery, *, through: int | None = None) -> Iterator[bytes]:
        """The canonical JSON (UTF-8) of each matching record, ordered by ``occurred_at`` then ``id``.

        ``through``: only records up to this place in the chain (``seq``), so a
        filtered export holds exactly the records of the chain it walked.
        """
        ...

    def iter_rows(self, query: AuditQuery) -> Iterator[StoredRecord]:
        """Each matching record's flat row, ordered by ``occurred_at`` then ``id``."""
        ...

    def iter_chain(self, *, with_columns: bool = False) -> Iterator[tuple[Any, ...]]:
        """Every record in insert order: ``(seq, prev_hash, hash, canonical)`` (bytes but seq).

        ``with_columns`` adds the columns an export filters on, as text:
        ``id, provider, flag_key, environment, occurred_at``.
        """
        ...

    def record_export(
        self,
        export_hash: str,
        exported_at: str,
        manifest: str,
        signature: str | None,
        *,
        previous: str | None,
    ) -> int:
        """Add an export to the export log; return its number.

        ``previous`` is the export hash the manifest names as ``previous_export``;
        when another export was logged meanwhile, nothing is added and
        :class:`breakglass.errors.AuditStoreError` says to export again (the log
        stays one line of exports, each naming the one before).
        """
        ...

    def exports(self) -> list[ExportEntry]:
        """The export log, oldest first."""
        ...

    def count(self, query: AuditQuery) -> int:
        """How many records match."""
        ...

    def status(self) -> StoreStatus:
        """Counts, first and last times, and cursors per provider and flag."""
        ...

    def problems(self, provider: str | None = None) -> list[Problem]:
        """The problems recorded so far, oldest first."""
        ...

    def pull_lock(self, provider: str, flag_key: str) -> AbstractContextManager[None]:
        """Hold the right to pull ``provider``/``flag_key``; raise AuditStoreError when taken.

        Two pulls of one vendor at once would only spend its rate limit twice,
        but a slower one could also move the cursor back.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_audit_store(settings: Settings, audit: AuditSettings | None = None) -> AuditStore:
    """The store the settings name: PostgreSQL when ``database_url`` is set, else SQLite.

    Nothing is opened until the first call on the store.

    Raises:
        ConfigurationError: The audit settings are invalid, or PostgreSQL is
            asked for and ``psycopg`` is not installed.
    """
    from breakglass.audit.settings import load_audit_settings

    audit = audit if audit is not None else load_audit_settings()
    if audit.database_url is not None:
        from breakglass.audit.postgres import PostgresAuditStore

        return PostgresAuditStore(audit.database_url, connect_timeout=audit.connect_timeout)
    from breakglass.audit.sqlite import SqliteAuditStore

    return SqliteAuditStore(audit.sqlite_path(settings), timeout=audit.connect_timeout)


def save_each(
    store: AuditStore, records: Sequence[StoredRecord]
) -> tuple[int, list[tuple[StoredRecord, AuditStoreError]]]:
    """Store ``records`` one by one, after a batch of them was refused.

    Returns:
        How many were newly stored, and the ones the store refused (with why).

    Raises:
        AuditStoreError: Every one was refused: the store is down, not the records bad.
    """
    from breakglass.errors import AuditStoreError

    inserted = 0
    refused: list[tuple[StoredRecord, AuditStoreError]] = []
    for record in records:
        try:
            inserted += store.save([record]).inserted
        except AuditStoreError as exc:
            if exc.transient:
                raise
            refused.append((record, exc))
    if records and len(refused) == len(records):
        raise refused[-1][1]
    return inserted, refused


def check_previous_export(previous: str | None, last: str | None) -> None:
    """Refuse to log an export whose ``previous_export`` is no longer the last one logged."""
    if previous != last:
        from breakglass.errors import AuditStoreError

        raise AuditStoreError(
            "another export was logged while this one was made; make this export again "
            "(each export names the one before it)"
        )


def dedupe(records: Sequence[StoredRecord]) -> tuple[list[StoredRecord], list[str]]:
    """Each id of a page once (its first copy), and the ids repeated with other content."""
    from breakglass.audit.codec import same_content

    first: dict[str, StoredRecord] = {}
    conflicts: list[str] = []
    for record in records:
        kept = first.get(record.id)
        if kept is None:
            first[record.id] = record
        elif not same_content(kept.canonical, record):
            conflicts.append(record.id)
    return list(first.values()), conflicts


def disagreeing(records: Sequence[StoredRecord], stored: dict[str, str]) -> list[str]:
    """The ids whose stored copy (``id -> canonical``) says something else than ``records``."""
    from breakglass.audit.codec import same_content

    return [
        r.id
        for r in records
        if r.id in stored and stored[r.id] != r.canonical and not same_content(stored[r.id], r)
    ]


def conflict_problem(record_id: str) -> str:
    """The problem line kept for an id that came back with different content."""
    return (
        f"{record_id}: already stored with different content; the first copy is kept "
        "(did the vendor reuse an id, or was its store reset?)"
    )


def summarise(
    location: str,
    version: int,
    groups: Sequence[Sequence[Any]],
    cursors: dict[tuple[str, str], str],
    problems: int,
) -> StoreStatus:
    """Build a :class:`StoreStatus` from ``(provider, flag, count, first, last)`` groups and cursors."""
    remaining = dict(cursors)
    summaries = [
        ProviderSummary(p, f, int(n), first, last, remaining.pop((p, f), None))
        for p, f, n, first, last in groups
    ]
    summaries += [ProviderSummary(p, f, 0, None, None, c) for (p, f), c in remaining.items()]
    summaries.sort(key=lambda s: (s.provider, s.flag_key))
    return StoreStatus(
        location=location,
        schema_version=version,
        records=sum(s.records for s in summaries),
        problems=problems,
        providers=summaries,
    )

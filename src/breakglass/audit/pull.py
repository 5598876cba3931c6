"""Pulling a provider's change history into the audit store.

The pull resumes from the provider's stored cursor, stores each page together
with the cursor after it in one transaction, and counts what it could not
keep. Killed at any moment (even ``SIGKILL``), it loses nothing and
duplicates nothing: the last committed page's cursor is where the next run
starts, and records are unique by id anyway.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from breakglass.audit.codec import StoredRecord, prepare
from breakglass.audit.store import CursorUpdate, Problem, SaveResult, save_each
from breakglass.audit_record import AuditRecord
from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.errors import AuditRecordError, AuditStoreError, BreakglassError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from breakglass.audit.store import AuditStore
    from breakglass.seams import AuditPage, AuditSource

logger = logging.getLogger("breakglass.audit")

_MAX_PROBLEMS_KEPT = 1000
"""Problem lines kept in a report (all are counted, and all are stored)."""


@dataclass(slots=True)
class PullReport:
    """What one pull of one provider did.

    Attributes:
        provider: The provider pulled.
        flag_key: The flag its audit source reads.
        pages: Pages fetched.
        fetched: Records the vendor returned (kept or not).
        stored: Records newly stored.
        duplicates: Records already stored (a re-run after a kill, overlapping pages).
        skipped: Records older than ``since``, not stored.
        malformed: Vendor entries that could not be normalised or kept.
        conflicts: Ids already stored with different content (first copy kept).
        problems: One line per malformed entry or conflict (the first thousand).
        cursor_before: Where the pull started.
        cursor_after: Where the next pull resumes.
        elapsed_s: Wall time of the pull.
        error: Why the pull stopped early, if it did (pages before it are kept).
    """

    provider: str
    flag_key: str
    pages: int = 0
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0
    malformed: int = 0
    conflicts: int = 0
    problems: list[str] = field(default_factory=list)
    cursor_before: str | None = None
    cursor_after: str | None = None
    elapsed_s: float = 0.0
    error: str | None = None

    @property
    def clean(self) -> bool:
        """Whether everything fetched was kept as it came (no error, malformed entry or conflict)."""
        return self.error is None and self.malformed == 0 and self.conflicts == 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "provider": self.provider,
            "flag_key": self.flag_key,
            "pages": self.pages,
            "fetched": self.fetched,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "malformed": self.malformed,
            "conflicts": self.conflicts,
            "problems": self.problems,
            "cursor_before": self.cursor_before,
            "cursor_after": self.cursor_after,
            "elapsed_s": round(self.elapsed_s, 3),
            "error": self.error,
        }

    def summary(self) -> str:
        """One line for people."""
        line = (
            f"{self.provider} ({self.flag_key}): {self.stored} new, {self.duplicates} already "
            f"stored, {self.malformed} malformed"
        )
        if self.conflicts:
            line += f", {self.conflicts} conflicting"
        if self.skipped:
            line += f", {self.skipped} before --since"
        line += f" ({self.fetched} fetched in {self.pages} pages, {self.elapsed_s:.1f} s)"
        if self.error:
            line += f"; stopped: {self.error}"
        return line

    def _note(self, problem: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS_KEPT:
            self.problems.append(problem)


def _check(record: object, provider: str) -> str | None:
    if not isinstance(record, AuditRecord):
        return f"not an AuditRecord but {type(record).__name__}"
    if record.provider != provider:
        return f"says provider {record.provider!r}, but was pulled from {provider!r}"
    return None


def _sort_page(
    page: AuditPage, report: PullReport, since: datetime | None, now: datetime
) -> tuple[list[StoredRecord], list[Problem]]:
    kept: list[StoredRecord] = []
    problems = [Problem(report.provider, report.flag_key, p, now) for p in page.problems]
    # An adapter that counts more malformed entries than it describes still gets them stored.
    problems += [
        Problem(
            report.provider, report.flag_key, "malformed entry (the adapter gave no detail)", now
        )
        for _ in range(max(0, page.malformed - len(page.problems)))
    ]
    report.malformed += max(page.malformed, len(page.problems))
    since_text = isoformat_ms(since) if since is not None else None
    for record in page.records:
        report.fetched += 1
        problem = _check(record, report.provider)
        if problem is None:
            try:
                row = prepare(record)
            except AuditRecordError as exc:
                problem = str(exc)
            else:
                # Both are RFC 3339 with milliseconds, so text order is time order.
                if since_text is not None and row.occurred_at < since_text:
                    report.skipped += 1
                else:
                    kept.append(row)
                continue
        report.malformed += 1
        what = getattr(record, "vendor_event_id", "?")
        problems.append(
            Problem(report.provider, report.flag_key, f"entry {what!r}: {problem}", now)
        )
    for noted in problems:
        report._note(noted.detail)
    return kept, problems


def _save_page(
    store: AuditStore,
    kept: list[StoredRecord],
    update: CursorUpdate | None,
    problems: list[Problem],
    now: datetime,
) -> tuple[SaveResult, list[str]]:
    """Store a page with its cursor; a record the store refuses becomes a problem, not a stuck pull.

    A page the store refuses as a whole while it is up (it takes the records
    one by one) keeps the refused records as problems and moves the cursor,
    so the next pull does not fail on the same page again.

    Returns:
        What was saved, and a line per refused record.
    """
    try:
        return store.save(kept, cursor=update, problems=problems), []
    except AuditStoreError as exc:
        if exc.transient or len(kept) < 2:  # one record: nothing to isolate
            raise
        inserted, refused = save_each(store, kept)
    provider = update.provider if update else kept[0].provider
    flag_key = update.flag_key if update else kept[0].flag_key
    lines = [f"{r.id}: the store refused it: {why}" for r, why in refused]
    store.save(
        [],
        cursor=update,
        problems=[*problems, *(Problem(provider, flag_key, x, now) for x in lines)],
    )
    return SaveResult(inserted, len(kept) - inserted - len(refused), []), lines


def pull_history(  # noqa: PLR0913 -- each knob is a documented CLI option
    store: AuditStore,
    source: AuditSource,
    *,
    provider: str,
    flag_key: str,
    since: datetime | None = None,
    from_start: bool = False,
    page_pause: float = 0.0,
    on_page: Callable[[PullReport], None] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    sleep: Callable[[float], None] = time.sleep,
) -> PullReport:
    """Pull ``provider``'s history for ``flag_key`` into ``store``.

    Args:
        store: The audit store.
        source: The provider's audit source (it does the HTTP and honours
            the vendor's rate limits; the pull asks for one page at a time).
        provider: The provider's name (records must say the same).
        flag_key: The flag the source reads (the cursor is kept per provider and flag).
        since: Do not store records that occurred before this (the cursor
            still moves past them).
        from_start: Ignore the stored cursor and fetch the whole history
            again (records already stored are recognised by id).
        page_pause: Seconds to wait before asking for the next page, to
            spare a vendor's rate limit.
        on_page: Called after each stored page (progress).
        clock: For problem times.
        sleep: How to wait (tests pass a fake).

    Returns:
        The report; ``error`` is set when the source failed part-way (the
        pages before it are stored, and the next pull resumes after them).

    Raises:
        AuditStoreError: The store cannot be written (the pull stops; what
            was committed stays).
    """
    report = PullReport(provider=provider, flag_key=flag_key)
    started = time.monotonic()
    with store.pull_lock(provider, flag_key):
        cursor = None if from_start else store.get_cursor(provider, flag_key)
        report.cursor_before = report.cursor_after = cursor
        pages = iter(source.pull(cursor))
        while True:
            try:
                page = next(pages, None)
            except AuditStoreError:
                raise
            except BreakglassError as exc:
                report.error = f"{type(exc).__name__}: {exc}"
                break
            except Exception as exc:
                # An adapter bug must not hide how far the pull got.
                logger.exception("the %s audit source failed", provider)
                report.error = f"{type(exc).__name__}: {exc}"
                break
            if page is None:
                break
            report.pages += 1
            kept, problems = _sort_page(page, report, since, clock.now())
            update = (
                CursorUpdate(provider, flag_key, page.cursor) if page.cursor is not None else None
            )
            result, refused = _save_page(store, kept, update, problems, clock.now())
            report.malformed += len(refused)
            for line in refused:
                report._note(line)
            report.stored += result.inserted
            report.duplicates += result.duplicates
            report.conflicts += len(result.conflicts)
            for record_id in result.conflicts:
                report._note(f"{record_id}: already stored with different content; first copy kept")
            if update is not None:
                report.cursor_after = update.cursor
            report.elapsed_s = time.monotonic() - started
            if on_page is not None:
                on_page(report)
            if page_pause > 0:
                sleep(page_pause)
    report.elapsed_s = time.monotonic() - started
    return report

"""Checking the store itself: its hash chain and its export log.

Each stored record carries, from the moment it is inserted, its place in the
store (``seq``: 1, 2, 3, ...), the hash of the record before it, and its own
hash (the hash its export line would have after that one, see
:func:`breakglass.audit.store.link`). Walking the records in that order and
recomputing each hash finds:

* a changed record (its content no longer matches its hash);
* a deleted or inserted record (a gap in ``seq``, or a ``prev_hash`` that
  does not name the record before);
* an edited query column (``id``, ``occurred_at``, ...), which could hide a
  record from a filtered export, when the columns are checked too.

The export log adds what a chain cannot see by itself: each export records the
store's head (last ``seq`` and its hash) when it was made, so deleting the
newest records, or rewriting the store and recomputing every hash, no longer
matches what an earlier export saw. Every export walks the chain before it is
complete; ``breakglass audit verify --store`` walks it on demand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from breakglass.audit.chain import ChainError, chain_record, check_object_line, genesis
from breakglass.audit.codec import column_text
from breakglass.errors import AuditChainError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from breakglass.audit.store import AuditStore, ExportEntry

_COLUMN_KEYS = ("id", "provider", "flag_key", "environment", "occurred_at")


@dataclass(slots=True)
class ChainWalk:
    """Walks the store's records in chain order, checking each (iterate it once).

    Yields ``(seq, line, hash, occurred_at)`` per record: its export line in a
    store-order export, its hash, and its time as a JSON string.

    Attributes:
        records: Records walked so far.
        head: The last record's ``(seq, hash)`` (``(0, GENESIS)`` for none).
        wanted: Places whose hashes to keep in :attr:`seen` (an export's predecessor,
            the heads the export log names).
        seen: The hash at each wanted place, once walked.
    """

    rows: Iterable[tuple[Any, ...]]
    records: int = 0
    head: tuple[int, bytes] = field(default_factory=lambda: (0, genesis()))
    wanted: set[int] = field(default_factory=set)
    seen: dict[int, bytes] = field(default_factory=dict)

    def __iter__(self) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        """Check and yield each record in turn; raise :class:`AuditChainError` where it breaks."""
        seq, prev = self.head
        wanted, seen = self.wanted, self.seen
        walked = 0
        try:
            for row in self.rows:
                place, stored_prev, stored_hash, canonical = row[:4]
                if place != seq + 1:
                    raise _broken_order(seq, place, row)
                if stored_prev != prev:
                    raise AuditChainError(
                        f"the audit store's chain is broken at record {place} "
                        f"({_id(canonical)}): it does not follow record {seq}: records were "
                        "deleted, inserted or reordered"
                    )
                try:
                    line, digest, occurred = chain_record(canonical, prev)
                except ChainError:
                    line, digest, occurred = b"", b"", b""
                if digest != stored_hash:
                    raise AuditChainError(
                        f"the audit store's chain is broken at record {place} "
                        f"({_id(canonical)}): its content does not match the hash stored with "
                        "it: it was changed after it was stored"
                    )
                if len(row) > 4:  # the query columns were asked for
                    _check_columns(place, canonical, row[4:])
                seq, prev = place, digest
                if seq in wanted:
                    seen[seq] = digest
                walked += 1
                yield seq, line, digest, occurred
        finally:
            self.records += walked
            self.head = (seq, prev)
            # Ends the store's read now, not whenever the generator is collected.
            close = getattr(self.rows, "close", None)
            if close is not None:
                close()


def _id(canonical: bytes) -> str:
    try:
        return f"id {json.loads(canonical).get('id')!r}"
    except (ValueError, AttributeError, RecursionError):
        return "not JSON"


def _broken_order(seq: int, place: object, row: tuple[Any, ...]) -> AuditChainError:
    where = f"after record {seq}" if seq else "at the start"
    if place is None:
        return AuditChainError(
            f"the audit store's chain is broken {where}: a record ({_id(row[3])}) has no "
            "place in it: it was inserted around the chain"
        )
    if isinstance(place, int) and place > seq + 1:
        missing = f"record {seq + 1}" if place == seq + 2 else f"records {seq + 1} to {place - 1}"
        return AuditChainError(
            f"the audit store's chain is broken {where}: {missing} missing: deleted"
        )
    return AuditChainError(f"the audit store's chain is broken {where}: record {place} repeats")


def _check_columns(place: int, canonical: bytes, columns: tuple[Any, ...]) -> None:
    data = json.loads(canonical)
    for key, value in zip(_COLUMN_KEYS, columns, strict=True):
        expected = data.get(key)
        if (column_text(expected) if isinstance(expected, str) else expected) != value:
            raise AuditChainError(
                f"the audit store's chain is broken at record {place} ({_id(canonical)}): "
                f"its {key} column says {value!r}, the record says {data.get(key)!r}: "
                "the column was edited"
            )


def check_export_log(exports: list[ExportEntry], walk: ChainWalk) -> None:
    """Check the export log against itself and against the walked chain.

    Each entry's manifest must carry its own hash, name the entry before it
    as ``previous_export``, and name a store head the chain still has.

    Raises:
        AuditChainError: Naming the export and what does not hold.
    """
    previous: str | None = None
    for entry in exports:
        try:
            manifest = check_object_line(entry.manifest.encode())
        except ChainError as exc:
            raise AuditChainError(
                f"the export log's entry {entry.seq} was changed: {exc}"
            ) from None
        if manifest.get("hash") != entry.export_hash:
            raise AuditChainError(
                f"the export log's entry {entry.seq} names another hash than its manifest's"
            )
        if manifest.get("previous_export", previous) != previous:
            raise AuditChainError(
                f"the export log's entry {entry.seq} does not follow entry {entry.seq - 1}: "
                "entries were deleted"
            )
        previous = entry.export_hash
        head = manifest.get("store_head")
        if not isinstance(head, dict):
            continue  # an export made before the store had a chain
        seq, digest = head.get("seq"), head.get("hash")
        if not isinstance(seq, int) or seq <= 0:
            continue
        if seq > walk.head[0]:
            raise AuditChainError(
                f"export {entry.seq} (made {entry.exported_at}) saw the store up to record "
                f"{seq}; the store now ends at record {walk.head[0]}: records were deleted"
            )
        if walk.seen.get(seq, b"").decode() != digest:
            raise AuditChainError(
                f"export {entry.seq} (made {entry.exported_at}) saw record {seq} with another "
                "hash: the store was rewritten since"
            )


def heads_named(exports: list[ExportEntry]) -> set[int]:
    """The places whose hashes :func:`check_export_log` needs."""
    wanted: set[int] = set()
    for entry in exports:
        try:
            head = json.loads(entry.manifest).get("store_head")
        except (ValueError, AttributeError, RecursionError):
            continue
        if isinstance(head, dict) and isinstance(head.get("seq"), int):
            wanted.add(head["seq"])
    return wanted


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """What :func:`check_store` found intact."""

    records: int
    head_seq: int
    head_hash: str
    exports: int

    def summary(self) -> str:
        """One line for people."""
        return (
            f"intact: {self.records} records chained (head {self.head_seq}, hash "
            f"{self.head_hash}); export log of {self.exports} exports consistent"
        )


def check_store(store: AuditStore) -> StoreCheck:
    """Walk the whole chain (query columns included) and the export log.

    Raises:
        AuditChainError: Where the store breaks.
        AuditStoreError: The store cannot be read.
    """
    exports = store.exports()
    walk = ChainWalk(store.iter_chain(with_columns=True), wanted=heads_named(exports))
    for _ in walk:
        pass
    check_export_log(exports, walk)
    return StoreCheck(walk.records, walk.head[0], walk.head[1].decode(), len(exports))

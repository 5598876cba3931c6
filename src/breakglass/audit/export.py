"""Exports: hash-chained JSON Lines (the evidence) and flat CSV (for spreadsheets).

A JSON Lines export is the matching records, ordered by ``occurred_at`` then
``id``, one a line and chained (:mod:`breakglass.audit.chain`), followed by a
manifest line, chained too, that states the filters, the count, the first and
last times, the final record hash and when the export was made. Removing
lines from the end therefore breaks the chain or removes the manifest: a
truncated export does not verify. The manifest's own ``hash`` (the last line's)
is *the export hash*: anchor it somewhere the exporter cannot rewrite, and the
whole file is fixed (see ``docs/compliance.md``).
"""

from __future__ import annotations

import csv
import json
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass.audit.chain import GENESIS, chain_object, chain_record
from breakglass.audit.codec import canonical_json
from breakglass.audit.integrity import ChainWalk, check_export_log, heads_named
from breakglass.audit.signing import ALGORITHM, SIGNATURE_SCHEMA
from breakglass.audit.store import AuditQuery
from breakglass.audit_record import SCHEMA
from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms
from breakglass.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import BinaryIO, TextIO

    from breakglass.audit.signing import Signer
    from breakglass.audit.store import AuditStore, ExportEntry

MANIFEST_SCHEMA = "breakglass.audit-export/v1"
"""The ``schema`` of an export's manifest line."""

ORDER = "occurred_at,id"
"""The order of a filtered export."""

STORE_ORDER = "store"
"""The order of an unfiltered export: the store's chain, as the records were stored."""
_BATCH = 1000

CSV_COLUMNS = (
    "id",
    "occurred_at",
    "provider",
    "flag_key",
    "project",
    "environment",
    "action",
    "value_before",
    "value_after",
    "actor_kind",
    "actor_id",
    "actor_email",
    "actor_name",
    "comment",
    "vendor_event_type",
    "vendor_event_id",
    "pulled_at",
)
"""The CSV header: the record flattened (``actor.*`` as ``actor_*``), without ``raw``."""

# A spreadsheet runs a cell that starts like a formula; vendor text must not (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an export states about itself (also its last line).

    Attributes:
        count: Records in the export.
        final_hash: The last record's hash (:data:`GENESIS` when empty).
        export_hash: The manifest line's own hash: the one value to anchor.
        first_occurred_at: The first record's time, if any.
        last_occurred_at: The last record's time, if any.
        data: The manifest line as written (without ``hash``/``prev_hash``).
    """

    count: int
    final_hash: str
    export_hash: str
    first_occurred_at: str | None
    last_occurred_at: str | None
    data: dict[str, Any]


def manifest_data(  # noqa: PLR0913 -- each is a manifest field
    query: AuditQuery,
    *,
    count: int,
    first: str | None,
    last: str | None,
    final_hash: str,
    exported_at: str,
    genesis: str = GENESIS,
    order: str = ORDER,
    seqs: tuple[int, int] | None = None,
    store_head: tuple[int, str] | None = None,
    previous_export: str | None = None,
) -> dict[str, Any]:
    """The manifest object, before chaining."""
    from breakglass import __version__

    return {
        "schema": MANIFEST_SCHEMA,
        "kind": "manifest",
        "record_schema": SCHEMA,
        "count": count,
        "filters": query.describe(),
        "order": order,
        "first_seq": seqs[0] if seqs else None,
        "last_seq": seqs[1] if seqs else None,
        "first_occurred_at": first,
        "last_occurred_at": last,
        "genesis": genesis,
        "final_hash": final_hash,
        "store_head": None if store_head is None else {"seq": store_head[0], "hash": store_head[1]},
        "previous_export": previous_export,
        "hash_algorithm": "sha256",
        "canonical_json": "sorted keys, separators ',' and ':', UTF-8, no NaN",
        "exported_at": exported_at,
        "exported_by": {"host": socket.gethostname(), "breakglass": __version__},
    }


class _Lines:
    """Export lines, written a thousand at a time, with the running count and time span.

    Callers append to :attr:`batch` and :attr:`times` and call :meth:`full`
    (no method call per line: this is the export's inner loop).
    """

    def __init__(self, out: BinaryIO, on_record: Callable[[int], None] | None) -> None:
        self.out = out
        self.on_record = on_record
        self.batch: list[bytes] = []
        self.times: list[bytes] = []
        self.count = 0
        self.earliest: bytes | None = None
        self.latest: bytes | None = None

    def full(self) -> None:
        self.flush()
        if self.on_record is not None:
            self.on_record(self.count)

    def flush(self) -> None:
        if not self.batch:
            return
        self.count += len(self.batch)
        low, high = min(self.times), max(self.times)
        if self.earliest is None or low < self.earliest:
            self.earliest = low
        if self.latest is None or high > self.latest:
            self.latest = high
        self.batch.append(b"")  # one write per batch, every line ending in a newline
        self.out.write(b"\n".join(self.batch))
        self.batch.clear()
        self.times.clear()

    def span(self) -> tuple[str | None, str | None]:
        return tuple(  # type: ignore[return-value]
            None if t is None else str(json.loads(t)) for t in (self.earliest, self.latest)
        )


def _add_chain(lines: _Lines, walk: ChainWalk, *, after: int | None) -> None:
    """Walk (and so check) the whole chain; add the records after ``after`` (none when ``None``)."""
    batch, times = lines.batch, lines.times
    for seq, line, _, occurred in walk:
        if after is not None and seq > after:
            batch.append(line)
            times.append(occurred)
            if len(batch) == _BATCH:
                lines.full()


def _add_query(lines: _Lines, canonicals: Iterable[bytes], prev: bytes) -> bytes:
    """Chain and add the records of a filtered query; return the last hash."""
    batch, times = lines.batch, lines.times
    for text in canonicals:
        line, prev, occurred = chain_record(text, prev)
        batch.append(line)
        times.append(occurred)
        if len(batch) == _BATCH:
            lines.full()
    return prev


def signature_line_for(signer: Signer, export_hash: str) -> str:
    """The line after the manifest: the export hash signed with ``signer``."""
    return canonical_json(
        {
            "schema": SIGNATURE_SCHEMA,
            "kind": "signature",
            "algorithm": ALGORITHM,
            "export_hash": export_hash,
            "key_id": signer.key_id,
            "signature": signer.sign(export_hash),
        }
    )


def _after_last_store_export(exports: list[ExportEntry]) -> int:
    """Where the last store-order export ended (0: none yet)."""
    for entry in reversed(exports):
        manifest = json.loads(entry.manifest)
        if manifest.get("order") == STORE_ORDER and isinstance(manifest.get("last_seq"), int):
            return int(manifest["last_seq"])
    return 0


def export_jsonl(  # noqa: PLR0913 -- each knob is a documented CLI option
    store: AuditStore,
    query: AuditQuery,
    out: BinaryIO,
    *,
    clock: Clock = SYSTEM_CLOCK,
    on_record: Callable[[int], None] | None = None,
    signer: Signer | None = None,
    new_only: bool = False,
    record: bool = True,
    stamper: Callable[[str], dict[str, Any]] | None = None,
) -> Manifest:
    """Write the matching records as hash-chained JSON Lines, then the manifest (and signature).

    Without filters the export is a slice of the store's own chain, in the
    order the store received the records: each line carries the hash the
    store keeps for it, and the first line's ``prev_hash`` names its
    predecessor in the store, so consecutive ``new_only`` exports link up.
    With filters, the matching records are ordered by ``occurred_at`` then
    ``id`` and chained from :data:`GENESIS`. Either way the whole store is
    checked first (:mod:`breakglass.audit.integrity`): a store whose chain or
    export log is broken is not exported, and the error names where it breaks.

    Args:
        store: Where the records are.
        query: Which records.
        out: A binary stream; every line ends with a newline.
        clock: For ``exported_at``.
        on_record: Called with the running count every thousand records (progress).
        signer: Sign the export hash; a signature line follows the manifest.
        new_only: Only the records stored since the last unfiltered export
            (which this one then continues). Not with filters.
        record: Add the export to the store's export log.
        stamper: Asks a time-stamping authority to stamp the export hash
            (:func:`breakglass.audit.timestamp.stamp`); its line follows.

    Returns:
        The manifest, with the export hash to anchor.

    Raises:
        AuditChainError: The store's chain or export log is broken.
        AuditStoreError: The store cannot be read or the export not logged.
    """
    exports = store.exports()
    filtered = query != AuditQuery()
    if new_only and filtered:
        raise ConfigurationError("--new exports the store's chain as it is: no filters with it")
    after = _after_last_store_export(exports) if new_only else 0
    walk = ChainWalk(store.iter_chain(with_columns=filtered), wanted=heads_named(exports))
    walk.wanted.add(after)
    lines = _Lines(out, on_record)
    _add_chain(lines, walk, after=after if not filtered else None)
    first_seq = after + 1 if lines.count or lines.batch else None
    check_export_log(exports, walk)
    head_seq, head_hash = walk.head
    genesis = GENESIS if after == 0 else walk.seen[after].decode()
    prev = genesis.encode()
    if filtered:
        # The records of the chain just walked, not those appended since: never half of them.
        prev = _add_query(lines, store.iter_canonical(query, through=head_seq), prev)
    elif first_seq is not None:
        prev = head_hash
    lines.flush()
    first, last = lines.span()
    data = manifest_data(
        query,
        count=lines.count,
        first=first,
        last=last,
        final_hash=prev.decode(),
        exported_at=isoformat_ms(clock.now()),
        genesis=genesis,
        order=ORDER if filtered else STORE_ORDER,
        seqs=None if filtered or first_seq is None else (first_seq, head_seq),
        store_head=(head_seq, head_hash.decode()),
        previous_export=exports[-1].export_hash if exports else None,
    )
    manifest_line, digest = chain_object(data, prev)
    out.write(manifest_line + b"\n")
    export_hash = digest.decode()
    signature_line = None
    if signer is not None:
        signature_line = signature_line_for(signer, export_hash)
        out.write(signature_line.encode() + b"\n")
    if stamper is not None:
        out.write(canonical_json(stamper(export_hash)).encode() + b"\n")
    out.flush()
    if record:
        store.record_export(
            export_hash,
            data["exported_at"],
            manifest_line.decode(),
            signature_line,
            previous=data["previous_export"],
        )
    return Manifest(
        count=lines.count,
        final_hash=prev.decode(),
        export_hash=export_hash,
        first_occurred_at=first,
        last_occurred_at=last,
        data=data,
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def export_csv(store: AuditStore, query: AuditQuery, out: TextIO) -> int:
    """Write the matching records as CSV (header first); return how many.

    ``out`` should be opened with ``newline=""``. Booleans are ``true`` /
    ``false``, unknowns are empty, and a text cell that a spreadsheet would
    run as a formula (starting with ``= + - @``) gets a leading ``'``. The
    CSV is for reading; the JSON Lines export is the evidence.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for row in store.iter_rows(query):
        values = row._asdict()
        writer.writerow([_cell(values[column]) for column in CSV_COLUMNS])
        count += 1
    return count

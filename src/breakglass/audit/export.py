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

from breakglass.audit.chain import GENESIS, chain_object, chain_record, genesis
from breakglass.audit_record import SCHEMA
from breakglass.clock import SYSTEM_CLOCK, Clock, isoformat_ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO, TextIO

    from breakglass.audit.store import AuditQuery, AuditStore

MANIFEST_SCHEMA = "breakglass.audit-export/v1"
"""The ``schema`` of an export's manifest line."""

ORDER = "occurred_at,id"
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


def manifest_data(
    query: AuditQuery,
    *,
    count: int,
    first: str | None,
    last: str | None,
    final_hash: str,
    exported_at: str,
) -> dict[str, Any]:
    """The manifest object, before chaining."""
    from breakglass import __version__

    return {
        "schema": MANIFEST_SCHEMA,
        "kind": "manifest",
        "record_schema": SCHEMA,
        "count": count,
        "filters": query.describe(),
        "order": ORDER,
        "first_occurred_at": first,
        "last_occurred_at": last,
        "genesis": GENESIS,
        "final_hash": final_hash,
        "hash_algorithm": "sha256",
        "canonical_json": "sorted keys, separators ',' and ':', UTF-8, no NaN",
        "exported_at": exported_at,
        "exported_by": {"host": socket.gethostname(), "breakglass": __version__},
    }


def _occurred_at(canonical: bytes) -> str:
    return str(json.loads(canonical)["occurred_at"])


def export_jsonl(
    store: AuditStore,
    query: AuditQuery,
    out: BinaryIO,
    *,
    clock: Clock = SYSTEM_CLOCK,
    on_record: Callable[[int], None] | None = None,
) -> Manifest:
    """Write the matching records as hash-chained JSON Lines, then the manifest.

    Args:
        store: Where the records are.
        query: Which records.
        out: A binary stream; every line ends with a newline.
        clock: For ``exported_at``.
        on_record: Called with the running count every thousand records (progress).

    Returns:
        The manifest, with the export hash to anchor.
    """
    prev = genesis()
    count = 0
    first_text: bytes | None = None
    text = b""
    batch: list[bytes] = []
    for text in store.iter_canonical(query):
        line, prev = chain_record(text, prev)
        batch.append(line)
        if first_text is None:
            first_text = text
        count += 1
        if len(batch) == _BATCH:
            batch.append(b"")  # one write per batch, every line ending in a newline
            out.write(b"\n".join(batch))
            batch.clear()
            if on_record is not None:
                on_record(count)
    if batch:
        batch.append(b"")
        out.write(b"\n".join(batch))
    last_text = text if count else None
    write = out.write
    first = _occurred_at(first_text) if first_text is not None else None
    last = _occurred_at(last_text) if last_text is not None else None
    data = manifest_data(
        query,
        count=count,
        first=first,
        last=last,
        final_hash=prev.decode(),
        exported_at=isoformat_ms(clock.now()),
    )
    line, digest = chain_object(data, prev)
    write(line)
    write(b"\n")
    out.flush()
    return Manifest(
        count=count,
        final_hash=prev.decode(),
        export_hash=digest.decode(),
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

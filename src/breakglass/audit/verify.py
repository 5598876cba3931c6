"""Verifying a JSON Lines export: the chain, the manifest, the signature, an anchored hash.

An export verifies when every line ends with a newline; every record line
is a chained ``breakglass.audit/v1`` record whose hash covers it and whose
``prev_hash`` is the previous line's hash (the first line's names the
export's predecessor, stated again in the manifest as ``genesis``); then
comes the manifest, chained too, whose count, final hash and earliest and
latest times match the records; then, optionally, one signature line and one
RFC 3161 time-stamp line (:mod:`breakglass.audit.timestamp`). Any
changed byte, reordered, removed or added line, or a cut-off end fails, and
the result names the first line that is wrong.

Hostile files are bounded: lines are read one at a time up to
:data:`MAX_LINE_BYTES` (``/dev/zero`` or a 300 MB line is one error, not a
memory exhaustion), text must be valid UTF-8, nesting deeper than the
interpreter allows is an error, and every problem is one sentence.

What the default check does and ``strict`` adds: the default checks every
byte of each record line against its hash and the chain, and that the line
is UTF-8 starting with the fixed fields an export writes. ``strict`` also
parses each record line as JSON and re-serialises it, so it also rejects a
record line that is not canonical JSON (invalid JSON after the fixed fields,
a duplicate key) although its hash matches: a line our exporter never writes,
only a forger who recomputed the hashes; a signature check
(``public_key``) rejects such a forgery in either mode.

Without an anchor or signature this proves the file is *self-consistent*:
whoever can rewrite the file can also recompute every hash. With ``expect``
(the export hash kept elsewhere) or ``public_key`` (the exporter's key) it
proves the file is byte for byte the one that was exported.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from breakglass.audit.chain import (
    RECORD_PREFIX,
    ChainError,
    check_object_line,
    check_record_line,
    parse_json_line,
)
from breakglass.audit.export import MANIFEST_SCHEMA
from breakglass.audit.signing import ALGORITHM, SIGNATURE_SCHEMA
from breakglass.audit.timestamp import TIMESTAMP_SCHEMA
from breakglass.audit.timestamp import check as check_timestamp
from breakglass.audit_record import SCHEMA
from breakglass.errors import BreakglassError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from breakglass.audit.signing import PublicKey

MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest line :func:`verify_export` reads (a vendor's raw entry is kilobytes)."""


class LineTooLongError(ChainError):
    """A line longer than the limit (raised by :func:`read_lines`)."""


def read_lines(
    handle: BinaryIO, limit: int = MAX_LINE_BYTES, chunk: int = 1 << 20
) -> Iterator[bytes]:
    """The lines of a binary stream (with their newlines), each at most ``limit`` bytes.

    Read a block at a time (faster than a ``readline`` per line); at most
    ``limit + chunk`` bytes are held at once, whatever the file holds.
    """
    rest = b""
    while True:
        block = handle.read(chunk)
        if not block:
            if rest:
                yield rest
            return
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if len(line) > limit:
                raise LineTooLongError(f"longer than {limit} bytes: not an export line")
            yield line + b"\n"
        if len(rest) > limit:
            raise LineTooLongError(f"longer than {limit} bytes: not an export line")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :func:`verify_export`.

    Attributes:
        ok: Whether the export is intact (and matches ``expect`` and ``public_key``, if given).
        records: Record lines that verified before the first problem.
        line: The first broken line (1-based), or ``None`` when intact.
        problem: What is wrong with it, or ``None``.
        export_hash: The manifest line's hash, when the manifest was reached.
        manifest: The manifest, when it verified.
        signature: The signature line, when there is one.
        signature_checked: Whether the signature was checked with a public key (and held).
        timestamp: The time-stamp line, when there is one.
        timestamp_time: The TSA's time, when the stamp was checked (and held).
    """

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None
    export_hash: str | None = None
    manifest: dict[str, Any] | None = field(default=None)
    signature: dict[str, Any] | None = field(default=None)
    signature_checked: bool = False
    timestamp: dict[str, Any] | None = field(default=None)
    timestamp_time: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "ok": self.ok,
            "records": self.records,
            "line": self.line,
            "problem": self.problem,
            "export_hash": self.export_hash,
            "manifest": self.manifest,
            "signature": self.signature,
            "signature_checked": self.signature_checked,
            "timestamp": self.timestamp,
            "timestamp_time": self.timestamp_time,
        }

    def summary(self) -> str:
        """One line for people (outside text in it still needs escaping for a terminal)."""
        if not self.ok:
            return f"BROKEN at line {self.line}: {self.problem}"
        manifest = self.manifest or {}
        span = (
            f", {manifest.get('first_occurred_at')} .. {manifest.get('last_occurred_at')}"
            if self.records
            else ""
        )
        if self.signature is None:
            signed = "not signed"
        elif self.signature_checked:
            signed = f"signature valid (key {self.signature.get('key_id')})"
        else:
            signed = (
                f"signed by key {self.signature.get('key_id')}, not checked (give --public-key)"
            )
        if self.timestamp is None:
            stamped = ""
        elif self.timestamp_time is not None:
            stamped = f"; time stamp valid ({self.timestamp_time}, {self.timestamp.get('tsa')})"
        else:
            stamped = f"; time-stamped by {self.timestamp.get('tsa')}, not checked (give --tsa-ca)"
        return (
            f"intact: {self.records} records{span}; exported {manifest.get('exported_at')}; "
            f"{signed}{stamped}; export hash {self.export_hash}"
        )


def _manifest_problem(
    data: dict[str, Any], count: int, prev: bytes, first_prev: bytes | None
) -> str | None:
    if data.get("schema") != MANIFEST_SCHEMA or data.get("kind") != "manifest":
        return "neither a record nor the manifest"
    if data.get("record_schema") != SCHEMA:
        return f"the manifest is for records of schema {data.get('record_schema')!r}"
    if data.get("prev_hash") != prev.decode():
        return "the manifest's prev_hash is not the last record's hash: records were removed, added or moved"
    genesis = data.get("genesis")
    if first_prev is not None and genesis != first_prev.decode():
        return "the manifest's genesis is not the first record's prev_hash: the start was cut off"
    if first_prev is None and genesis != prev.decode():
        return "the manifest's genesis is not its prev_hash, yet it counts no records"
    if data.get("count") != count:
        return f"the manifest counts {data.get('count')!r} records, the file has {count}"
    if data.get("final_hash") != prev.decode():
        return "the manifest's final_hash is not the last record's hash"
    return None


def _times_problem(
    data: dict[str, Any], earliest: bytes | None, latest: bytes | None
) -> str | None:
    try:
        ends = tuple(None if t is None else json.loads(t) for t in (earliest, latest))
    except (ValueError, RecursionError):
        return "a record's occurred_at is not a JSON string"
    if (data.get("first_occurred_at"), data.get("last_occurred_at")) != ends:
        return "the manifest's first and last times do not match the records"
    return None


def _signature_problem(data: Any, export_hash: str, public_key: PublicKey | None) -> str | None:
    if data.get("schema") != SIGNATURE_SCHEMA:
        return "the signature line is not a breakglass signature"
    if data.get("export_hash") != export_hash:
        return "the signature line is for another export hash"
    if data.get("algorithm") != ALGORITHM or not isinstance(data.get("signature"), str):
        return f"the signature line is not an {ALGORITHM} signature"
    if public_key is None:
        return None
    if data.get("key_id") != public_key.key_id:
        return (
            f"signed by key {data.get('key_id')!r}, not by the given public key "
            f"({public_key.key_id})"
        )
    if not public_key.verify(export_hash, data["signature"]):
        return "the signature does not verify with the given public key: the export was rewritten"
    return None


def _timestamp_problem(data: dict[str, Any], export_hash: str) -> str | None:
    if data.get("schema") != TIMESTAMP_SCHEMA:
        return "the time-stamp line is not a breakglass time stamp"
    if data.get("export_hash") != export_hash:
        return "the time-stamp line is for another export hash"
    if not isinstance(data.get("reply"), str):
        return "the time-stamp line holds no reply"
    return None


def _check_strictly(line: bytes) -> None:
    if check_object_line(line).get("schema") != SCHEMA:
        raise ChainError(f"not a {SCHEMA} record")


def _broken(count: int, line: int, problem: str) -> VerifyResult:
    return VerifyResult(ok=False, records=count, line=line, problem=problem)


def verify_lines(  # noqa: C901, PLR0915 -- one pass, one check after another
    lines: Iterable[bytes],
    *,
    expect: str | None = None,
    strict: bool = False,
    public_key: PublicKey | None = None,
    tsa_ca: Path | None = None,
) -> VerifyResult:
    """Verify an export given as lines (each with its trailing newline).

    Args:
        lines: The file's lines, e.g. :func:`read_lines` of a file opened in binary mode.
        expect: The export hash anchored elsewhere; the manifest's hash must equal it.
        strict: Also parse every record line and check it by the definition itself
            (see the module's documentation for what that adds).
        public_key: The exporter's public key: the export must carry a valid
            signature by it.
        tsa_ca: The time-stamping authority's CA certificate: the export must
            carry a time stamp that ``openssl ts -verify`` accepts.
    """
    prev: bytes | None = None
    first_prev: bytes | None = None
    count = 0
    earliest: bytes | None = None
    latest: bytes | None = None
    manifest: dict[str, Any] | None = None
    signature: dict[str, Any] | None = None
    timestamp: dict[str, Any] | None = None
    number = 0
    try:
        for number, raw in enumerate(lines, 1):
            if not raw.endswith(b"\n"):
                return _broken(count, number, "the line has no newline: the file was cut off")
            line = raw[:-1]
            try:
                if line.startswith(RECORD_PREFIX) and manifest is None:
                    if strict:
                        _check_strictly(line)
                    prev, found_prev, occurred = check_record_line(line, prev)
                    if first_prev is None:
                        first_prev = found_prev
                    count += 1
                    if earliest is None or occurred < earliest:
                        earliest = occurred
                    if latest is None or occurred > latest:
                        latest = occurred
                    continue
                if manifest is not None:
                    data = parse_json_line(line)
                    kind = data.get("kind") if isinstance(data, dict) else None
                    export_hash = str(manifest["hash"])
                    if kind == "signature" and signature is None and timestamp is None:
                        problem = _signature_problem(data, export_hash, public_key)
                        signature = data
                    elif kind == "timestamp" and timestamp is None:
                        problem = _timestamp_problem(data, export_hash)
                        timestamp = data
                    else:
                        problem = (
                            "a line after the manifest that is neither its signature nor its "
                            "time stamp"
                        )
                    if problem is not None:
                        return _broken(count, number, problem)
                    continue
                data = check_object_line(line)
            except ChainError as exc:
                return _broken(count, number, str(exc))
            problem = _manifest_problem(
                data,
                count,
                prev if prev is not None else str(data.get("genesis")).encode(),
                first_prev,
            ) or _times_problem(data, earliest, latest)
            if problem is not None:
                return _broken(count, number, problem)
            manifest = data
    except LineTooLongError as exc:
        return _broken(count, number + 1, str(exc))
    if manifest is None:
        return _broken(
            count, number + 1, "no manifest at the end: the export was cut off or is not one"
        )
    export_hash = str(manifest["hash"])
    problem, stamped_at = _anchor_problem(
        export_hash, expect, (public_key, signature), (tsa_ca, timestamp)
    )
    return VerifyResult(
        ok=problem is None,
        records=count,
        line=None if problem is None else number,
        problem=problem,
        export_hash=export_hash,
        manifest=manifest,
        signature=signature,
        signature_checked=problem is None and public_key is not None,
        timestamp=timestamp,
        timestamp_time=stamped_at,
    )


def _anchor_problem(
    export_hash: str,
    expect: str | None,
    signing: tuple[PublicKey | None, dict[str, Any] | None],
    stamping: tuple[Path | None, dict[str, Any] | None],
) -> tuple[str | None, str | None]:
    """What the anchors given (``expect``, a public key, a TSA certificate) say; and the stamp's time."""
    public_key, signature = signing
    if public_key is not None and signature is None:
        return "the export is not signed, but a public key was given to check it", None
    if expect is not None and not hmac.compare_digest(
        expect.strip().lower().encode(), export_hash.encode()
    ):
        return "the export hash is not the one anchored (--expect): the file was rewritten", None
    tsa_ca, timestamp = stamping
    if tsa_ca is None:
        return None, None
    if timestamp is None:
        return "the export has no time stamp, but a TSA certificate was given to check it", None
    try:
        return None, check_timestamp(timestamp, export_hash, tsa_ca)
    except BreakglassError as exc:
        return str(exc), None


def verify_export(
    path: str,
    *,
    expect: str | None = None,
    strict: bool = False,
    public_key: PublicKey | None = None,
    tsa_ca: Path | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> VerifyResult:
    """Verify the export in the file at ``path`` (``-`` reads standard input)."""
    import sys

    anchors: dict[str, Any] = {"expect": expect, "public_key": public_key, "tsa_ca": tsa_ca}
    if path == "-":
        return verify_lines(read_lines(sys.stdin.buffer, max_line_bytes), strict=strict, **anchors)
    with open(path, "rb") as handle:
        return verify_lines(read_lines(handle, max_line_bytes), strict=strict, **anchors)

"""Verifying a JSON Lines export: the chain, the manifest, and (optionally) an anchored hash.

An export verifies when every line ends with a newline; every record line
is a chained ``breakglass.audit/v1`` record whose hash covers it and whose
``prev_hash`` is the previous line's hash; the last line is the manifest,
chained too; and the manifest's count, final hash and first and last times
match the records. Any changed byte, reordered, removed or added line, or a
cut-off end fails, and the result names the first line that is wrong.

Without an anchor this proves the file is *self-consistent*: whoever can
rewrite the file can also recompute every hash. With ``expect`` (the export
hash kept somewhere else when the export was made) it proves the file is
byte for byte the one that was exported.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from breakglass.audit.chain import (
    GENESIS,
    RECORD_PREFIX,
    ChainError,
    check_object_line,
    check_record_line,
    genesis,
)
from breakglass.audit.export import MANIFEST_SCHEMA
from breakglass.audit_record import SCHEMA

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :func:`verify_export`.

    Attributes:
        ok: Whether the export is intact (and matches ``expect``, if given).
        records: Record lines that verified before the first problem.
        line: The first broken line (1-based), or ``None`` when intact.
        problem: What is wrong with it, or ``None``.
        export_hash: The manifest line's hash, when the manifest was reached.
        manifest: The manifest, when it verified.
    """

    ok: bool
    records: int
    line: int | None = None
    problem: str | None = None
    export_hash: str | None = None
    manifest: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "ok": self.ok,
            "records": self.records,
            "line": self.line,
            "problem": self.problem,
            "export_hash": self.export_hash,
            "manifest": self.manifest,
        }

    def summary(self) -> str:
        """One or two sentences for people."""
        if self.ok:
            manifest = self.manifest or {}
            span = (
                f", {manifest.get('first_occurred_at')} .. {manifest.get('last_occurred_at')}"
                if self.records
                else ""
            )
            return f"intact: {self.records} records{span}; export hash {self.export_hash}"
        return f"BROKEN at line {self.line}: {self.problem}"


def _manifest_problem(
    data: dict[str, Any], count: int, prev: bytes, ends: tuple[str | None, str | None]
) -> str | None:
    if data.get("schema") != MANIFEST_SCHEMA or data.get("kind") != "manifest":
        return "neither a record nor the manifest"
    if data.get("record_schema") != SCHEMA:
        return f"the manifest is for records of schema {data.get('record_schema')!r}"
    if data.get("prev_hash") != prev.decode():
        return "the manifest's prev_hash is not the last record's hash: records were removed, added or moved"
    if data.get("genesis") != GENESIS:
        return "the manifest names another genesis hash"
    if data.get("count") != count:
        return f"the manifest counts {data.get('count')} records, the file has {count}"
    if data.get("final_hash") != prev.decode():
        return "the manifest's final_hash is not the last record's hash"
    if (data.get("first_occurred_at"), data.get("last_occurred_at")) != ends:
        return "the manifest's first and last times do not match the records"
    return None


def _check_strictly(line: bytes) -> None:
    if check_object_line(line).get("schema") != SCHEMA:
        raise ChainError(f"not a {SCHEMA} record")


def _broken(count: int, line: int, problem: str) -> VerifyResult:
    return VerifyResult(ok=False, records=count, line=line, problem=problem)


def _time(line: bytes | None) -> str | None:
    return None if line is None else str(json.loads(line)["occurred_at"])


def verify_lines(
    lines: Iterable[bytes], *, expect: str | None = None, strict: bool = False
) -> VerifyResult:
    """Verify an export given as lines (each with its trailing newline).

    Args:
        lines: The file's lines, e.g. a file opened in binary mode.
        expect: The export hash anchored elsewhere; the manifest's hash must equal it.
        strict: Also parse every record line and check it by the definition
            itself (canonical JSON, schema, hash). Slower; the default check is
            already exact (see :mod:`breakglass.audit.chain`).
    """
    prev = genesis()
    count = 0
    first: bytes | None = None
    last: bytes | None = None
    manifest: dict[str, Any] | None = None
    number = 0
    for number, raw in enumerate(lines, 1):
        if manifest is not None:
            return _broken(count, number, "a line after the manifest")
        if not raw.endswith(b"\n"):
            return _broken(count, number, "the line has no newline: the file was cut off")
        line = raw[:-1]
        try:
            if line.startswith(RECORD_PREFIX):
                if strict:
                    _check_strictly(line)
                prev = check_record_line(line, prev)
                count += 1
                if first is None:
                    first = line
                last = line
                continue
            data = check_object_line(line)
        except ChainError as exc:
            return _broken(count, number, str(exc))
        problem = _manifest_problem(data, count, prev, (_time(first), _time(last)))
        if problem is not None:
            return _broken(count, number, problem)
        manifest = data
    if manifest is None:
        return _broken(
            count, number + 1, "no manifest at the end: the export was cut off or is not one"
        )
    export_hash = str(manifest["hash"])
    if expect is not None and not hmac.compare_digest(expect.strip().lower(), export_hash):
        return VerifyResult(
            ok=False,
            records=count,
            line=number,
            problem="the export hash is not the one anchored (--expect): the file was rewritten",
            export_hash=export_hash,
            manifest=manifest,
        )
    return VerifyResult(ok=True, records=count, export_hash=export_hash, manifest=manifest)


def verify_export(path: str, *, expect: str | None = None, strict: bool = False) -> VerifyResult:
    """Verify the export in the file at ``path`` (``-`` reads standard input)."""
    import sys

    if path == "-":
        return verify_lines(sys.stdin.buffer, expect=expect, strict=strict)
    with open(path, "rb") as handle:
        return verify_lines(handle, expect=expect, strict=strict)

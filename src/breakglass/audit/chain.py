"""The hash chain of a JSON Lines export.

Every line of an export is canonical JSON (see :mod:`breakglass.audit.codec`)
of an object with two extra keys:

* ``prev_hash``: the previous line's ``hash`` (:data:`GENESIS` for the first);
* ``hash``: SHA-256, in lower-case hex, of the canonical JSON of the line's
  object *without* ``hash`` (so ``prev_hash`` is covered).

Anyone can check a line with any JSON library: parse it, remove ``hash``,
serialise with sorted keys and no white space as UTF-8, hash, compare.

Records are written and checked here on bytes, without parsing and
re-serialising each line (that would cost more than the rest of an export
together). This is exact, not a shortcut: the stored record is already
canonical, and in canonical JSON removing or inserting one key of the
top-level object removes or inserts exactly ``"key":value,`` at the place
the key sorts to. The regular expressions below find that place by reading
the fixed keys in front of it (``action``, ``actor``, ``comment``,
``environment``, ``flag_key``), which no vendor data can shift, and
:func:`check_record_line` insists the hash sits exactly there, so a line
that verifies is byte for byte the line that was written.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from breakglass.audit.codec import canonical_json

GENESIS = "0" * 64
"""The ``prev_hash`` of an export's first line."""

_GENESIS_BYTES = GENESIS.encode()

# A JSON string as json.dumps writes it: no raw quote or backslash inside but escaped ones.
# Possessive: a string never gives back what it matched, so a hostile line cannot make it backtrack.
_STR = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_NSTR = rb"(?:null|" + _STR + rb")"
_HEAD = (
    rb'\{"action":' + _STR + rb',"actor":\{"email":' + _NSTR + rb',"id":' + _NSTR
    + rb',"kind":' + _STR + rb',"name":' + _NSTR + rb'\},"comment":' + _NSTR
    + rb',"environment":' + _NSTR + rb',"flag_key":' + _STR + rb","
)  # fmt: skip
_HEX = rb"[0-9a-f]{64}"

_LINE = re.compile(
    _HEAD
    + rb'(?P<hash_field>"hash":"(?P<hash>' + _HEX + rb')",)"id":' + _STR
    + rb',"occurred_at":(?P<occurred>' + _STR + rb'),"prev_hash":"(?P<prev>' + _HEX
    + rb')","project":'
)  # fmt: skip
"""An exported record line, up to its ``prev_hash``."""

RECORD_PREFIX = b'{"action":'
"""Every record line starts so (``action`` is the first key in sorted order)."""


class ChainError(ValueError):
    """A line is not what the chain says it should be (internal; verify reports it)."""


def sha256_hex(data: bytes) -> bytes:
    """SHA-256 of ``data`` as lower-case hex bytes."""
    return hashlib.sha256(data).hexdigest().encode()


def chain_record(canonical: bytes, prev_hash: bytes) -> tuple[bytes, bytes, bytes]:
    """Turn a stored record's canonical JSON into an export line (without newline).

    The store keeps the same hash for each record at insert time (its link in
    the store's chain), so a store-order export's lines carry the store's hashes.

    The places are found with four searches rather than a regular expression
    (a third faster, and exact for what :func:`breakglass.audit.codec.prepare` writes):
    in canonical JSON a quote inside a string is always escaped, so
    ``},"comment":`` first occurs where the actor object ends (its values are
    strings or null), and the top-level ``,"id":"`` and ``,"project":`` follow
    at the first places after it. A stored record edited into another shape
    only gets a hash that no longer matches, and an export line that
    :func:`check_record_line` (which insists on the exact shape) refuses.

    Returns:
        The line, its hash (hex bytes), and its ``occurred_at`` as a JSON string
        (quotes included; these sort as the times they name).

    Raises:
        ChainError: The text is not shaped like a record at all.
    """
    actor_end = canonical.find(b'},"comment":')
    start = canonical.find(b',"id":"', actor_end) + 1
    end = canonical.find(b',"project":', start) + 1
    occurred = canonical.find(b',"occurred_at":', start) + 15
    if actor_end < 0 or start <= 0 or end <= 0 or occurred < 15 or occurred >= end:
        raise ChainError("a stored record is not canonical breakglass.audit/v1 JSON")
    prev_field = b'"prev_hash":"' + prev_hash + b'",'
    tail = canonical[end:]
    sha = hashlib.sha256(canonical[:end])
    sha.update(prev_field)
    sha.update(tail)
    digest = sha.hexdigest().encode()
    line = b"".join(
        (canonical[:start], b'"hash":"', digest, b'",', canonical[start:end], prev_field, tail)
    )
    return line, digest, canonical[occurred : end - 1]


def check_record_line(line: bytes, prev_hash: bytes | None) -> tuple[bytes, bytes, bytes]:
    """Check one exported record line against the chain.

    Args:
        line: The line without its newline.
        prev_hash: The previous line's hash; ``None`` for the first line,
            whose ``prev_hash`` names the export's predecessor.

    Returns:
        The line's hash, its ``prev_hash``, and its ``occurred_at`` (a JSON string).

    Raises:
        ChainError: With a sentence saying what is wrong.
    """
    match = _LINE.match(line)
    if match is None:
        raise ChainError("not a breakglass.audit/v1 record line as an export writes it")
    if not line.isascii():  # isascii() is a scan without a copy; most lines are ASCII
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ChainError(f"not valid UTF-8 (byte {exc.start})") from None
    start, end = match.span("hash_field")
    digest = match["hash"]
    sha = hashlib.sha256(line[:start])
    sha.update(line[end:])
    if sha.hexdigest().encode() != digest:
        raise ChainError("its hash does not match its content: the line was changed")
    if prev_hash is not None and match["prev"] != prev_hash:
        raise ChainError(
            "its prev_hash is not the previous line's hash: a line before it was removed, "
            "added or moved"
        )
    return digest, match["prev"], match["occurred"]


def chain_object(data: dict[str, Any], prev_hash: bytes) -> tuple[bytes, bytes]:
    """Chain any JSON object (the manifest) the slow, obvious way; return line and hash."""
    body = dict(data)
    body.pop("hash", None)
    body["prev_hash"] = prev_hash.decode()
    digest = sha256_hex(canonical_json(body).encode())
    body["hash"] = digest.decode()
    return canonical_json(body).encode(), digest


def check_object_line(line: bytes) -> dict[str, Any]:
    """Check a line by the definition itself: canonical, and its hash covers the rest.

    Returns:
        The parsed object (with ``hash`` and ``prev_hash``).

    Raises:
        ChainError: With a sentence saying what is wrong.
    """
    data = parse_json_line(line)
    if not isinstance(data, dict) or not isinstance(data.get("hash"), str):
        raise ChainError("not a JSON object with a hash")
    body = dict(data)
    digest = body.pop("hash")
    try:
        again = canonical_json(data).encode()
        computed = sha256_hex(canonical_json(body).encode()).decode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ChainError(f"not canonical JSON: {type(exc).__name__}") from None
    if again != line:
        raise ChainError("not canonical JSON: the line was changed")
    if computed != digest:
        raise ChainError("its hash does not match its content: the line was changed")
    return data


def parse_json_line(line: bytes) -> Any:
    """``json.loads`` of one line, strict UTF-8, with every failure a :class:`ChainError`.

    The standard decoder recurses once per nesting level up to the interpreter's
    limit; a deeper line is a ``RecursionError``, reported here as one sentence.
    """
    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ChainError(f"not valid UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise ChainError("nested too deeply to be a record") from None
    except ValueError:
        raise ChainError("not JSON") from None


def genesis() -> bytes:
    """:data:`GENESIS` as bytes."""
    return _GENESIS_BYTES

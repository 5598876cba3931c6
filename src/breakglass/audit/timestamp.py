"""RFC 3161 time stamps of an export hash: asking a time-stamping authority, and checking its answer.

A signature proves who made an export; a time stamp from a time-stamping
authority (TSA) proves it existed at the TSA's time, by a clock the exporter
does not control. The stamped data is the 64 ASCII characters of the export
hash (the same text the Ed25519 signature covers), hashed with SHA-256, so
``openssl ts -query -data <file holding the hash>`` asks for the same stamp.

Asking needs only the standard library: the request is a few fixed DER
bytes, sent with ``POST`` (``application/timestamp-query``). The reply is kept
whole, base64, in a line after the manifest. Checking the reply's signature
and certificate chain is ``openssl ts -verify`` (the ``openssl`` command must
be installed), given the TSA's CA certificate.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from breakglass.errors import AuditStoreError, ConfigurationError

TIMESTAMP_SCHEMA = "breakglass.audit-timestamp/v1"
"""The ``schema`` of an export's time-stamp line."""

_SHA256_OID = bytes.fromhex("0609608648016503040201")  # 2.16.840.1.101.3.4.2.1
_MAX_REPLY = 1 << 20
_GRANTED = (0, 1)  # granted, grantedWithMods


class TimestampError(AuditStoreError):
    """The time-stamping authority could not be asked, or did not grant a stamp."""


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:  # DER: the short length form
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def imprint(export_hash: str) -> bytes:
    """What is stamped: SHA-256 of the export hash's 64 ASCII characters."""
    return hashlib.sha256(export_hash.encode("ascii")).digest()


def request_der(export_hash: str, nonce: int) -> bytes:
    """A DER ``TimeStampReq``: version 1, SHA-256 imprint, ``nonce``, the TSA's certificate asked for."""
    algorithm = _tlv(0x30, _SHA256_OID + b"\x05\x00")
    message = _tlv(0x30, algorithm + _tlv(0x04, imprint(export_hash)))
    return _tlv(0x30, _integer(1) + message + _integer(nonce) + b"\x01\x01\xff")


def _read_tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """``(tag, content start, content end)`` of the DER element at ``at``."""
    if at + 2 > len(data):
        raise ValueError("truncated")
    tag, first = data[at], data[at + 1]
    start = at + 2
    if first < 0x80:  # DER: the short length form
        size = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:  # no indefinite or absurd lengths
            raise ValueError("bad length")
        size = int.from_bytes(data[start : start + count], "big")
        start += count
    if start + size > len(data):
        raise ValueError("truncated")
    return tag, start, start + size


def reply_status(reply: bytes) -> tuple[int, bool]:
    """The ``PKIStatus`` of a ``TimeStampResp`` and whether it carries a token.

    Raises:
        ValueError: Not a DER ``TimeStampResp``.
    """
    tag, start, end = _read_tlv(reply, 0)
    if tag != 0x30:  # SEQUENCE
        raise ValueError("not a SEQUENCE")
    tag, info_start, info_end = _read_tlv(reply, start)
    if tag != 0x30:
        raise ValueError("no PKIStatusInfo")
    tag, value_start, value_end = _read_tlv(reply, info_start)
    if tag != 0x02:  # INTEGER
        raise ValueError("no status")
    return int.from_bytes(reply[value_start:value_end], "big"), info_end < end


def stamp(url: str, export_hash: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """Ask the TSA at ``url`` to stamp ``export_hash``; return the time-stamp line's object.

    Raises:
        TimestampError: The TSA could not be reached, or refused, or answered nonsense.
    """
    import urllib.error
    import urllib.request  # here: only an export with a TSA needs it

    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"the time-stamping authority must be an http(s) URL, not {url!r}")
    nonce = secrets.randbits(63)
    request = urllib.request.Request(  # noqa: S310 -- the scheme is checked above
        url,
        data=request_der(export_hash, nonce),
        headers={"Content-Type": "application/timestamp-query"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            reply = response.read(_MAX_REPLY + 1)
    except urllib.error.HTTPError as exc:
        raise TimestampError(
            f"the time-stamping authority {url} answered HTTP {exc.code}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TimestampError(f"cannot reach the time-stamping authority {url}: {reason}") from None
    if len(reply) > _MAX_REPLY:
        raise TimestampError(f"the time-stamping authority {url} answered more than 1 MiB")
    try:
        status, has_token = reply_status(reply)
    except ValueError:
        raise TimestampError(
            f"the time-stamping authority {url} did not answer with an RFC 3161 reply"
        ) from None
    if status not in _GRANTED or not has_token:
        raise TimestampError(f"the time-stamping authority {url} refused (status {status})")
    return {
        "schema": TIMESTAMP_SCHEMA,
        "kind": "timestamp",
        "export_hash": export_hash,
        "tsa": url,
        "nonce": nonce,
        "reply": base64.b64encode(reply).decode("ascii"),
    }


def check(line: dict[str, Any], export_hash: str, ca_file: Path) -> str:
    """Check a time-stamp line with ``openssl ts -verify``; return the TSA's time.

    Raises:
        ConfigurationError: ``openssl`` is not installed.
        TimestampError: The stamp is not the TSA's stamp of this export hash.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigurationError("checking a time stamp needs the openssl command")
    try:
        reply = base64.b64decode(str(line.get("reply", "")).encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise TimestampError("the time-stamp line holds no readable reply") from None
    with tempfile.TemporaryDirectory(prefix="breakglass-ts-") as tmp:
        path = Path(tmp) / "reply.tsr"
        path.write_bytes(reply)
        verified = subprocess.run(  # noqa: S603 -- fixed arguments, our own files
            [openssl, "ts", "-verify", "-digest", imprint(export_hash).hex(), "-in", str(path),
             "-CAfile", str(ca_file)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if verified.returncode != 0 or "Verification: OK" not in verified.stdout:
            raise TimestampError(
                "the time stamp does not verify against the TSA's CA certificate for this "
                "export hash"
            )
        text = subprocess.run(  # noqa: S603 -- fixed arguments, our own files
            [openssl, "ts", "-reply", "-in", str(path), "-text"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
    for row in text.splitlines():
        if row.startswith("Time stamp:"):
            return row.split(":", 1)[1].strip()
    return "unknown time"

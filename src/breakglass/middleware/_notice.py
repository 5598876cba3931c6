"""The 503 notice, sans I/O: one refusal -> status, headers and body, shared by ASGI and WSGI.

The body is JSON::

    {"error": "service_suspended", "reason": "off: the flag is off", "since": "2026-11-27T10:00:00.123Z"}

``since`` is ``null`` when the start of the halt is not known (the process
started halted). With ``BREAKGLASS_GUARD__STATUS_URL`` set, ``status_url``
links the deployer's public status page (``docs/notifications.md``). A refusal changes once per halt, so each is rendered once and
then served from a small cache, never built per request.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from breakglass.clock import isoformat_ms

if TYPE_CHECKING:
    from breakglass.guard import Refusal

ERROR_CODE = "service_suspended"
"""The ``error`` field of every notice."""

STATUS = 503
STATUS_LINE = "503 Service Unavailable"
CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Notice:
    """A rendered refusal, ready for either protocol.

    Attributes:
        status: The HTTP status code (503).
        status_line: The status as WSGI's ``start_response`` wants it.
        headers: Header names and values as text (WSGI).
        raw_headers: The same as lower-case bytes (ASGI).
        body: The JSON body.
    """

    status: int
    status_line: str
    headers: tuple[tuple[str, str], ...]
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def notice_body(refusal: Refusal) -> dict[str, str | None]:
    """The JSON document a refused client receives (``status_url`` only when configured)."""
    since = isoformat_ms(refusal.since) if refusal.since is not None else None
    body = {"error": ERROR_CODE, "reason": refusal.reason, "since": since}
    if refusal.status_url:
        body["status_url"] = refusal.status_url
    return body


@functools.lru_cache(maxsize=16)
def render(refusal: Refusal) -> Notice:
    """Render ``refusal`` as a 503 response (cached: refusals are immutable and rare)."""
    body = json.dumps(notice_body(refusal), separators=(",", ":")).encode()
    headers = (
        ("content-type", CONTENT_TYPE),
        ("content-length", str(len(body))),
        ("retry-after", str(refusal.retry_after)),
        # A cache must not keep answering 503 after the resume.
        ("cache-control", "no-store"),
    )
    return Notice(
        status=STATUS,
        status_line=STATUS_LINE,
        headers=headers,
        raw_headers=tuple(
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ),
        body=body,
    )

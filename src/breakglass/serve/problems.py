"""Errors as RFC 9457 problem details (``application/problem+json``).

Each ``type`` is a relative URI under ``/problems/``, where serve explains it,
so a person who meets one in a log can look it up on the server they use.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

MEDIA_TYPE = "application/problem+json"

TYPES: dict[str, tuple[str, str]] = {
    "not-halted": (
        "NOT HALTED",
        "No target acknowledged the halt: the system may still be running. Halt another way "
        "now (the vendor's dashboard, or the infrastructure kill switch), then check status.",
    ),
    "not-resumed": (
        "Not resumed everywhere",
        "At least one target did not acknowledge the resume. Stop wins, so the system stays "
        "halted; retry the resume once the target answers.",
    ),
    "resume-refused": (
        "Resume refused",
        "The resumption criteria are not met yet; the answer lists what is missing.",
    ),
    "gate-refused": (
        "Refused by the resumption gate",
        "The tick, approval or condition was not accepted: the same person approving twice, "
        "an approval before the checklist is complete, a missing answer, or the wrong role.",
    ),
    "unauthenticated": (
        "Not authenticated",
        "Send an API token or an OIDC bearer token (Authorization: Bearer ...), or log in to "
        "the console.",
    ),
    "forbidden": (
        "Not allowed",
        "Your role does not allow this, or the request came from another origin or without "
        "the console's CSRF token.",
    ),
    "too-many-failures": (
        "Too many failed logins",
        "Failed logins from this address are rate limited; a valid token still works.",
    ),
    "invalid-request": ("Invalid request", "The body or a parameter is not valid; see errors."),
    "idempotency-key-reused": (
        "Idempotency key reused",
        "This Idempotency-Key was used before with a different request body.",
    ),
    "idempotency-key-in-use": (
        "Request in progress",
        "A request with this Idempotency-Key is still being answered; retry shortly.",
    ),
    "not-found": ("Not found", "There is nothing at this address."),
    "store-unavailable": (
        "Store unavailable",
        "serve's store (SQLite or PostgreSQL) does not answer. Halting still works.",
    ),
    "internal": ("Internal error", "serve failed unexpectedly; the log has the details."),
}


def problem(
    slug: str,
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem-details response of type ``/problems/<slug>``."""
    title = TYPES.get(slug, (slug, ""))[0]
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)

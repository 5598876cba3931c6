"""What the ASGI and WSGI middleware share to hold a request instead of refusing it."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from breakglass.guard import Suspended
    from breakglass.hold.queue import Decision, HoldQueue

Route = tuple[str | None, str]


def parse_routes(routes: Iterable[str]) -> tuple[Route, ...]:
    """``"POST /path"`` -> ``("POST", "/path")``; ``"/path"`` -> ``(None, "/path")`` (any method)."""
    parsed = []
    for text in routes:
        method, _, path = text.strip().rpartition(" ")
        if not path.startswith("/"):
            raise ValueError(f"a hold route is '[METHOD] /path', not {text!r}")
        parsed.append((method.upper() or None, path))
    return tuple(parsed)


def matches(routes: tuple[Route, ...], method: str, path: str) -> bool:
    """Whether ``method path`` is one of ``routes`` (a route's path also covers what is below it)."""
    return any(
        (m is None or m == method) and (path == p or path.startswith(p.rstrip("/") + "/"))
        for m, p in routes
    )


def hold_request(  # noqa: PLR0913 -- the request's parts
    queue: HoldQueue,
    exc: Suspended,
    *,
    method: str,
    path: str,
    query: str,
    content_type: str | None,
    idempotency_key: str | None,
    body: bytes,
) -> Decision:
    """Store the request durably (raises ``HoldError`` when it cannot be)."""
    request: dict[str, Any] = {
        "method": method,
        "path": path,
        "query": query,
        "content_type": content_type,
        "body_b64": base64.b64encode(body).decode(),
    }
    key = f"http:{idempotency_key}" if idempotency_key else None
    return queue.hold("http-request", request, because=exc.refusal.reason, key=key)


def held_body(decision: Decision) -> bytes:
    """The ``202 Accepted`` body that hands the client its ticket."""
    return json.dumps(
        {
            "status": "held",
            "ticket": decision.ticket,
            "reason": decision.held_because,
            "detail": "the service is suspended; this request is kept for review and "
            "released or discarded after the suspension",
        }
    ).encode()

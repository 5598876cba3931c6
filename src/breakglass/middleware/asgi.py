"""ASGI middleware: refuse new HTTP requests with a 503 notice while halted; never cut one.

Usage::

    app = GuardMiddleware(app, guard, exempt_paths={"/healthz"})

Per scope type:

* ``http``: admitted while :attr:`breakglass.guard.Guard.active`, counted in
  flight until the wrapped app returns (for ASGI that is after the last body
  chunk was sent), or refused with the 503 notice.
* ``websocket``: the *handshake* is guarded: while halted the connection is
  refused before it is accepted, with the 503 notice where the server offers
  the ``websocket.http.response`` extension, else with a close (code 1013,
  "try again later", which servers turn into HTTP 403). An accepted session is
  not counted in flight (it may last hours and would stall every drain) and is
  not cut; an app that streams over a long session checks ``guard.active``
  before each unit of work, which costs about a hundred nanoseconds.
* ``lifespan`` and anything else: passed through untouched.

Holding: with ``hold=`` a :class:`breakglass.hold.HoldQueue` and ``hold_routes``
(``"POST /v1/decisions"``, or a path prefix ``"/v1/decisions"`` for any method),
a request to such a route while halted is not refused but kept: its method,
path, query, content type and body (at most ``hold_max_body`` bytes) are stored
durably and the client gets ``202 Accepted`` with ``{"status": "held", "ticket": ...}``.
The review after the gated resume releases or discards it. When it cannot be
stored, the client gets the 503 notice, as without holding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from breakglass.guard import Suspended
from breakglass.middleware._hold import held_body, hold_request, matches
from breakglass.middleware._notice import render
from breakglass.middleware._options import GuardOptions

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBSOCKET_TRY_AGAIN_LATER = 1013
"""The close code sent to a refused websocket when the server cannot send a 503."""


class GuardMiddleware(GuardOptions[ASGIApp]):
    """Wrap an ASGI application with a :class:`breakglass.guard.Guard`.

    Args:
        app: The ASGI application to protect.
        guard: The guard that admits or refuses each request.
        exempt_paths: Paths (exact ``scope["path"]`` matches, e.g.
            ``"/healthz"``) served even while halted, and not counted.

    The middleware holds no state of its own and is safe to share between
    event loops; the guard does the counting.
    """

    def __repr__(self) -> str:
        return f"GuardMiddleware({self.app!r}, {self.guard!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        kind = scope["type"]
        if kind == "http":
            if scope["path"] in self.exempt_paths:
                await self.app(scope, receive, send)
                return
            try:
                ticket = self.guard.admit()
            except Suspended as exc:
                if self.hold is not None and self._holds(scope):
                    await self._hold(scope, receive, send, exc)
                else:
                    await _send_http_notice(send, exc)
                return
            with ticket:
                await self.app(scope, receive, send)
        elif kind == "websocket" and scope["path"] not in self.exempt_paths:
            try:
                self.guard.check()
            except Suspended as exc:
                await _refuse_websocket(scope, receive, send, exc)
                return
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _holds(self, scope: Scope) -> bool:
        return matches(self.hold_routes, scope.get("method", ""), scope["path"])

    async def _hold(self, scope: Scope, receive: Receive, send: Send, exc: Suspended) -> None:
        assert self.hold is not None  # noqa: S101 -- checked by the caller
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left: nothing was decided, nothing to hold
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.hold_max_body:
                await _send_http_notice(send, exc)
                return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        from breakglass.hold.store import HoldError

        try:
            held = await asyncio.to_thread(
                hold_request,
                self.hold,
                exc,
                method=scope.get("method", ""),
                path=scope["path"],
                query=scope.get("query_string", b"").decode("latin-1"),
                content_type=headers.get("content-type"),
                idempotency_key=headers.get("idempotency-key"),
                body=bytes(body),
            )
        except HoldError:
            await _send_http_notice(send, exc)
            return
        answer = held_body(held)
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})


async def _send_http_notice(send: Send, exc: Suspended) -> None:
    notice = render(exc.refusal)
    await send(
        {"type": "http.response.start", "status": notice.status, "headers": notice.raw_headers}
    )
    await send({"type": "http.response.body", "body": notice.body})


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, exc: Suspended) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left before the handshake: nothing to refuse
    notice = render(exc.refusal)
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": notice.status,
                "headers": notice.raw_headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": notice.body})
    else:
        await send({"type": "websocket.close", "code": WEBSOCKET_TRY_AGAIN_LATER})

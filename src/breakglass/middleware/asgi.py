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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from breakglass.guard import Guard, Suspended
from breakglass.middleware._notice import render

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBSOCKET_TRY_AGAIN_LATER = 1013
"""The close code sent to a refused websocket when the server cannot send a 503."""


class GuardMiddleware:
    """Wrap an ASGI application with a :class:`breakglass.guard.Guard`.

    Args:
        app: The ASGI application to protect.
        guard: The guard that admits or refuses each request.
        exempt_paths: Paths (exact ``scope["path"]`` matches, e.g.
            ``"/healthz"``) served even while halted, and not counted.

    The middleware holds no state of its own and is safe to share between
    event loops; the guard does the counting.
    """

    def __init__(self, app: ASGIApp, guard: Guard, *, exempt_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.guard = guard
        self.exempt_paths = frozenset(exempt_paths)

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

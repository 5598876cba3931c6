"""WSGI middleware: refuse new requests with a 503 notice while halted; never cut one.

Usage::

    app = GuardWSGIMiddleware(app, guard, exempt_paths={"/healthz"})

A request is in flight from admission until its response iterable is
exhausted or closed (PEP 3333: the server calls ``close()`` once it has sent
the response, even after an error), not merely until the application returns:
a streaming response is still being produced after that. Threaded servers call
the middleware from many threads at once; the guard's counters are thread-safe.

Holding works as in the ASGI middleware: ``hold=`` a :class:`breakglass.hold.HoldQueue`
and ``hold_routes`` answer such a request while halted with ``202`` and a ticket.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from wsgiref.types import WSGIApplication

from breakglass.guard import Suspended, Ticket
from breakglass.middleware._hold import held_body, hold_request, matches
from breakglass.middleware._notice import render
from breakglass.middleware._options import GuardOptions

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class GuardWSGIMiddleware(GuardOptions[WSGIApplication]):
    """Wrap a WSGI application with a :class:`breakglass.guard.Guard`.

    Args:
        app: The WSGI application to protect.
        guard: The guard that admits or refuses each request.
        exempt_paths: Paths (exact ``PATH_INFO`` matches, e.g. ``"/healthz"``)
            served even while halted, and not counted.
    """

    def __repr__(self) -> str:
        return f"GuardWSGIMiddleware({self.app!r}, {self.guard!r})"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Serve one WSGI request."""
        if environ.get("PATH_INFO", "") in self.exempt_paths:
            return self.app(environ, start_response)
        try:
            ticket = self.guard.admit()
        except Suspended as exc:
            method = environ.get("REQUEST_METHOD", "")
            if self.hold is not None and matches(
                self.hold_routes, method, environ.get("PATH_INFO", "")
            ):
                held = self._hold(environ, exc)
                if held is not None:
                    start_response(
                        "202 Accepted",
                        [("Content-Type", "application/json"), ("Content-Length", str(len(held)))],
                    )
                    return [held]
            notice = render(exc.refusal)
            start_response(notice.status_line, list(notice.headers))
            return [notice.body]
        try:
            result = self.app(environ, start_response)
            return _GuardedResponse(result, ticket)
        except BaseException:
            # The app failed before handing over a response: nothing more will run for it.
            ticket.release()
            raise

    def _hold(self, environ: WSGIEnvironment, exc: Suspended) -> bytes | None:
        """The 202 body once the request is stored; ``None`` when it cannot be (answer 503)."""
        from breakglass.hold.store import HoldError

        assert self.hold is not None  # noqa: S101 -- checked by the caller
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if length > self.hold_max_body:
            return None
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            held = hold_request(
                self.hold,
                exc,
                method=environ.get("REQUEST_METHOD", ""),
                path=environ.get("PATH_INFO", ""),
                query=environ.get("QUERY_STRING", ""),
                content_type=environ.get("CONTENT_TYPE"),
                idempotency_key=environ.get("HTTP_IDEMPOTENCY_KEY"),
                body=body,
            )
        except HoldError:
            return None
        return held_body(held)


class _GuardedResponse:
    """The app's response iterable; releases the ticket once exhausted or closed."""

    __slots__ = ("_iterator", "_result", "_ticket")

    def __init__(self, result: Iterable[bytes], ticket: Ticket) -> None:
        self._result = result
        self._ticket = ticket
        self._iterator: Iterator[bytes] = iter(result)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._iterator)
        except StopIteration:
            # Every chunk was handed to the server (and written: servers ask for the next one after).
            self._ticket.release()
            raise

    def close(self) -> None:
        """Close the app's iterable (PEP 3333) and count the request as completed."""
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._ticket.release()

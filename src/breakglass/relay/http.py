"""The relay's HTTP listener: OFREP (see :mod:`breakglass.ofrep`) on a small threaded server.

Standard library only, so a relay needs nothing beyond the core. Each
connection has a socket timeout (a slowloris client holds one thread for at
most that long) and bodies are capped; nothing here can change the decision.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from breakglass.ofrep import MAX_BODY, Answer, OfrepEndpoint

if TYPE_CHECKING:
    from breakglass.engine import StateEngine

logger = logging.getLogger("breakglass.relay")

_TIMEOUT = 10.0


class _Handler(BaseHTTPRequestHandler):
    server_version = "breakglass-relay"
    protocol_version = "HTTP/1.1"
    timeout = _TIMEOUT
    endpoint: OfrepEndpoint  # set on the subclass the server builds

    def version_string(self) -> str:
        """No Python version in the ``Server`` header."""
        return self.server_version

    def do_POST(self) -> None:
        self._answer("POST")

    def do_GET(self) -> None:
        self._answer("GET")

    def _answer(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._send(
                Answer(413, {"errorCode": "PARSE_ERROR", "errorDetails": "body too large"}),
                close=True,
            )
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            answer = self.endpoint.handle(method, self.path, body, headers)
        except Exception:
            logger.exception("relay: OFREP request failed")
            answer = Answer(500, {"errorCode": "GENERAL", "errorDetails": "internal error"})
        self._send(answer)

    def _send(self, answer: Answer, *, close: bool = False) -> None:
        payload = answer.encoded()
        self.send_response(answer.status)
        if answer.body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the stdlib's name
        logger.debug("relay http: %s", format % args)


class OfrepServer:
    """OFREP on ``address`` for ``engine``'s decision, served from a daemon thread.

    Raises:
        OSError: The address cannot be bound.
    """

    def __init__(self, address: tuple[str, int], engine: StateEngine) -> None:
        handler = type("OfrepHandler", (_Handler,), {"endpoint": OfrepEndpoint(engine)})
        self._server = ThreadingHTTPServer(address, handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` actually bound."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Serve in the background."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="breakglass-relay-http", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()

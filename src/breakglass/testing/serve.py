"""Running ``breakglass serve`` in tests: the real app on uvicorn, on a free loopback port.

Needs the ``serve`` extra.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from breakglass.local.store import LocalStore
from breakglass.serve.auth import Role
from breakglass.serve.runtime import Server, build
from breakglass.serve.settings import ServeSettings
from breakglass.settings import LocalSettings, Settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from starlette.types import ASGIApp

FLAG = "system-active"
KEY_IN_USE = "/problems/idempotency-key-in-use"


def bind_loopback() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class UvicornThread:
    """uvicorn in a background thread on a socket already bound to 127.0.0.1 (a free port)."""

    def __init__(
        self, app: ASGIApp, *, graceful: float = 2.0, sock: socket.socket | None = None
    ) -> None:
        # A caller that must know the address before the app exists binds the socket itself.
        self.socket = sock if sock is not None else bind_loopback()
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
            log_level="warning",
            timeout_graceful_shutdown=int(graceful),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UvicornThread:
        """Start serving; returns once uvicorn listens."""
        self.thread.start()
        deadline = time.monotonic() + 10.0
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.socket.close()
                raise RuntimeError("uvicorn did not start on 127.0.0.1 within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (running requests get ``graceful`` seconds)."""
        self.server.should_exit = True
        self.thread.join(timeout=10.0)
        self.socket.close()
        if self.thread.is_alive():
            raise RuntimeError("uvicorn did not stop within 10 s")

    def __enter__(self) -> UvicornThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def console_login(url: str, token: str) -> tuple[httpx.Client, str]:
    """A client logged in to the console at ``url`` with ``token`` (a session cookie), and its CSRF token."""
    c = httpx.Client(base_url=url, timeout=30.0, follow_redirects=False)
    nonce = c.get("/login").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    done = c.post("/login", data={"token": token, "csrf": nonce}, headers={"Origin": url})
    if done.headers.get("location") != "/":
        c.close()
        raise RuntimeError(f"the console login at {url} failed: HTTP {done.status_code}")
    page = c.get("/").text
    return c, page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


@dataclass
class Running:
    """A started serve and a token per role."""

    server: Server
    http: UvicornThread
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.http.url

    def client(self, role: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client on the server, with the token of ``role`` (none when ``None``)."""
        headers = kwargs.pop("headers", {})
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)

    def console(self, role: str) -> tuple[httpx.Client, str]:
        """A client logged in to the console as ``role`` (as a browser: a session cookie), and its CSRF token."""
        return console_login(self.url, self.tokens[role])

    def wait_active(self, active: bool, timeout: float = 5.0) -> bool:  # noqa: FBT001 -- reads as the state awaited
        """Wait until the engine reads ``active``; whether it did within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.bridge.engine.active == active:
                return True
            time.sleep(0.01)
        return False


def halt_once_answered(
    client: httpx.Client, body: dict[str, Any], key: str, timeout: float = 30.0
) -> httpx.Response:
    """POST /v1/halt with ``key`` as its Idempotency-Key, repeated while serve says the key is in use.

    serve keeps the answer to a key's first halt (or releases the key) just after sending it.
    """
    deadline = time.monotonic() + timeout
    while True:
        response = client.post("/v1/halt", json=body, headers={"Idempotency-Key": key})
        in_use = response.status_code == 409 and response.json().get("type") == KEY_IN_USE
        if not in_use or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def local_settings(root: Path, **overrides: Any) -> Settings:
    """The local provider on ``root/local.db``, polled fast; the flag set on."""
    store = LocalStore(root / "local.db")
    store.write(FLAG, value=True, actor="setup", reason="tests start active")
    overrides.setdefault("provider", "local")
    overrides.setdefault("max_staleness", 5.0)
    return Settings(
        flag_key=FLAG,
        state_dir=root / "state",
        local=LocalSettings(path=root / "local.db", poll_interval=0.02),
        **overrides,
    )


@contextmanager
def running_serve(
    root: Path,
    settings: Settings | None = None,
    serve: ServeSettings | None = None,
    **build_options: Any,
) -> Iterator[Running]:
    """Serve on the local provider (unless ``settings`` say otherwise), with a token per role."""
    settings = settings or local_settings(root)
    serve = serve or ServeSettings(path=root / "serve.db", token_refresh=0.2)
    server = build(settings, serve, **build_options)
    http = UvicornThread(server.app).start()
    running = Running(server, http)
    try:
        for role in Role:
            _, text = server.services.tokens.create(f"{role.label}-1", role, by="test setup")
            running.tokens[role.label] = text
        yield running
    finally:
        server.services.control.hub.close()  # as `breakglass serve` does on SIGTERM
        http.stop()
        server.close()

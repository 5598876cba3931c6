"""A real uvicorn server on loopback: a halt drains every request in flight and refuses the rest."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from breakglass.clock import isoformat_ms
from breakglass.engine import StateEngine
from breakglass.guard import Guard
from breakglass.middleware import GuardMiddleware
from breakglass.testing import ScriptedSource
from breakglass.testing.serve import UvicornThread

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from breakglass.middleware.asgi import Receive, Scope, Send

IN_FLIGHT = 40
LATER = 10
HOLD_LIMIT = 20.0
"""Seconds a held request waits for the test before giving up with a 500 (so nothing hangs)."""


class HeldApp:
    """An inference stand-in: each request waits until the test lets it finish."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.arrived = 0
        self._released = False
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def release(self) -> None:
        """Let every held request finish (called from the test's thread)."""
        self._released = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._event.set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self._loop = asyncio.get_running_loop()  # before reading the flag: see release()
        self.arrived += 1  # only the server's event loop thread writes it
        status = 200
        if not self._released:
            try:
                await asyncio.wait_for(self._event.wait(), timeout=HOLD_LIMIT)
            except TimeoutError:
                status = 500
        # Says whether this request finished after the halt began (the guard refusing by then).
        body = json.dumps({"finished_while_halted": not self.guard.active}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def ServerThread(app: GuardMiddleware) -> UvicornThread:  # noqa: N802 -- reads as the class it was
    """uvicorn in a background thread on a free loopback port; running requests get 5 s at exit."""
    return UvicornThread(app, graceful=5)


@pytest.fixture
def guarded() -> Iterator[tuple[Guard, ScriptedSource, HeldApp]]:
    """A guard on a real-clock engine whose source has confirmed true (fresh for a minute)."""
    source = ScriptedSource("local")
    engine = StateEngine("system-active", [source], max_staleness=60.0)
    engine.start()
    source.confirm(True)
    guard = Guard(engine, retry_after=17)
    yield guard, source, HeldApp(guard)
    guard.close()
    engine.close()


async def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.live
@pytest.mark.asyncio
async def test_halt_under_load_drains_all_in_flight_and_refuses_later_requests(
    guarded: tuple[Guard, ScriptedSource, HeldApp],
) -> None:
    """40 requests in flight at the halt all get 200; every later one gets the 503 notice; resume serves."""
    guard, source, app = guarded
    with ServerThread(GuardMiddleware(app, guard)) as server:
        try:
            await _halt_under_load(guard, source, app, server.port)
        finally:
            app.release()  # on a failed assertion, let held requests end before the server stops


async def _halt_under_load(guard: Guard, source: ScriptedSource, app: HeldApp, port: int) -> None:
    limits = httpx.Limits(max_connections=IN_FLIGHT + LATER + 5)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=30.0, limits=limits
    ) as client:
        # Given: N requests admitted and held inside the app.
        held = [asyncio.create_task(client.post("/infer", content=b"x")) for _ in range(IN_FLIGHT)]
        await wait_until(lambda: app.arrived == IN_FLIGHT, 15.0, f"{IN_FLIGHT} requests to arrive")
        assert guard.stats().in_flight == IN_FLIGHT

        # When: the flag turns false while all of them are in flight.
        source.confirm(False)
        assert guard.active is False

        # Then: every new request is refused at once with the notice...
        later = await asyncio.wait_for(
            asyncio.gather(*(client.post("/infer", content=b"y") for _ in range(LATER))),
            timeout=5.0,  # a refusal is immediate; a request let through would be held here
        )
        for response in later:
            assert response.status_code == 503
            assert response.headers["retry-after"] == "17"
            assert response.headers["content-type"] == "application/json"
            notice = response.json()
            assert notice["error"] == "service_suspended"
            assert notice["reason"] == "off: the flag is off"
            halted_since = guard.stats().halted_since
            assert halted_since is not None
            assert notice["since"] == isoformat_ms(halted_since)
        assert app.arrived == IN_FLIGHT  # none of them reached the app

        # ...and every request already in flight completes normally.
        app.release()
        done = await asyncio.wait_for(asyncio.gather(*held, return_exceptions=True), timeout=15.0)
        failures = [r for r in done if not isinstance(r, httpx.Response) or r.status_code != 200]
        assert failures == [], f"{len(failures)} of {IN_FLIGHT} in-flight requests were dropped"
        assert all(
            isinstance(r, httpx.Response) and r.json() == {"finished_while_halted": True}
            for r in done
        )
        stats = guard.stats()
        assert (stats.in_flight, stats.completed, stats.drained, stats.refused) == (
            0,
            IN_FLIGHT,
            IN_FLIGHT,
            LATER,
        )
        assert guard.drain(timeout=1.0).remaining == 0

        # Resume: requests are served again.
        source.confirm(True)
        resumed = await client.post("/infer", content=b"z")
        assert resumed.status_code == 200
        assert resumed.json() == {"finished_while_halted": False}

"""A guarded ASGI inference service: 503 "service suspended" while `system-active` is false.

Run:  BREAKGLASS_STATE_DIR=/tmp/bg .venv/bin/uvicorn examples.asgi_service:app --port 8000
Then: .venv/bin/breakglass --state-dir /tmp/bg halt --reason "drill" and watch requests get 503.

With ``--workers 4`` each worker imports this module and runs its own bridge;
every response names the worker that served it (``x-worker-pid``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import breakglass
from breakglass.middleware import GuardMiddleware

bridge = breakglass.open_bridge().start()
guard = bridge.guard()


async def inference(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """Stands in for a model server."""
    del receive
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.1)
    body = json.dumps({"completion": "..."}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


def named(app: ASGIApp) -> ASGIApp:
    """Add the serving process's pid to every response, refusals included."""

    async def wrapper(
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        async def send_named(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                pid = str(os.getpid()).encode()
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-worker-pid", pid)],
                }
            await send(message)

        await app(scope, receive, send_named)

    return wrapper


app = named(GuardMiddleware(inference, guard, exempt_paths={"/healthz"}))

"""A guarded ASGI inference service: 503 "service suspended" while `system-active` is false.

Run:  BREAKGLASS_STATE_DIR=/tmp/bg .venv/bin/uvicorn examples.asgi_service:app --port 8000
Then: .venv/bin/breakglass --state-dir /tmp/bg halt --reason "drill" and watch requests get 503.
"""

from __future__ import annotations

import asyncio
import json
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


app = GuardMiddleware(inference, guard, exempt_paths={"/healthz"})

"""A small inference service that holds its decisions while halted (run as a process by the tests).

``python -m tests.hold_service <delivered.jsonl>`` reads the flag like any
service (settings from the environment), serves on a free loopback port
(printed as ``port <n>``), and:

* ``POST /decide`` ``{"applicant": ...}`` makes a credit decision and submits it to the
  :class:`~breakglass.hold.HoldQueue`: delivered at once while active (a line in
  the delivery file), held while halted (``{"held": true, "ticket": ...}``);
* ``POST /v1/score`` is a held route of the middleware: 202 with a ticket while halted;
* a background loop delivers what the review released, once each.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import uvicorn

from breakglass.bridge import Bridge
from breakglass.hold import HoldQueue, HoldStore
from breakglass.middleware import GuardMiddleware
from breakglass.settings import load_settings


def main() -> None:  # noqa: PLR0915 -- the whole sample service, in one place
    delivered = Path(sys.argv[1])
    settings = load_settings()
    bridge = Bridge.from_settings(settings).start()
    bridge.engine.wait_for_confirmation(5.0)
    guard = bridge.guard()
    queue = HoldQueue(HoldStore.open(settings), guard)
    lock = threading.Lock()

    def deliver(kind: str, ticket: str | None, payload: dict[str, Any]) -> None:
        with lock, delivered.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"kind": kind, "ticket": ticket, "payload": payload}) + "\n")
            out.flush()

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer: dict[str, Any]
        if scope["path"] == "/decide":
            request = json.loads(body)
            decision = {"applicant": request["applicant"], "outcome": "refused", "score": 412}
            made = queue.submit("credit-decision", decision, key=request.get("key"))
            if made.released:
                deliver("credit-decision", None, decision)
                answer = {"held": False}
            else:
                answer = {"held": True, "ticket": made.ticket}
        else:
            answer = {"scored": True}
        data = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def release_loop() -> None:
        while True:
            try:
                queue.deliver_released(lambda h: deliver(h.kind, h.ticket, h.payload))
            except Exception as exc:  # noqa: BLE001 -- keep delivering; the test reads the log
                print(f"delivery failed: {exc}", file=sys.stderr, flush=True)
            time.sleep(0.1)

    threading.Thread(target=release_loop, daemon=True).start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections made before uvicorn serves wait in the backlog
    print(f"port {sock.getsockname()[1]}", flush=True)
    # /decide is the decision pipeline itself: its delivery step is what holds.
    guarded = GuardMiddleware(
        app, guard, exempt_paths={"/decide"}, hold=queue, hold_routes=["POST /v1/score"]
    )
    config = uvicorn.Config(guarded, lifespan="off", log_level="warning", http="h11")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()

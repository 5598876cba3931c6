"""A guarded WSGI inference service for gunicorn: 503 "service suspended" while `system-active` is false.

Run:  BREAKGLASS_STATE_DIR=/tmp/bg .venv/bin/gunicorn --preload -w 4 examples.wsgi_service:app
Then: .venv/bin/breakglass --state-dir /tmp/bg halt --reason "drill" and watch every worker answer 503.

The bridge starts at import, so with ``--preload`` it starts once in the master
and every worker is forked from it: each worker comes up halted and reads the
flag through its own readers (``breakglass.forking``). Every response names the
worker that served it (``x-worker-pid``), so a drill can see each one stop.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING

import breakglass
from breakglass.middleware import GuardWSGIMiddleware

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from _typeshed import OptExcInfo
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

bridge = breakglass.open_bridge().start()
guard = bridge.guard()


def inference(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Stands in for a model server."""
    del environ
    time.sleep(0.05)
    body = json.dumps({"completion": "..."}).encode()
    start_response("200 OK", [("content-type", "application/json")])
    return [body]


def named(app: WSGIApplication) -> WSGIApplication:
    """Add the serving process's pid to every response, refusals included."""

    def wrapper(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(
            status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
        ) -> Callable[[bytes], object]:
            # Read per response: each forked worker has its own pid.
            return start_response(status, [*headers, ("x-worker-pid", str(os.getpid()))], exc_info)

        return app(environ, start)

    return wrapper


app = named(GuardWSGIMiddleware(inference, guard, exempt_paths={"/healthz"}))

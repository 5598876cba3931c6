"""HTTP middleware for inference services: drain in-flight requests, refuse new ones with a 503.

* :class:`GuardMiddleware` wraps an ASGI application (uvicorn, hypercorn, Starlette, FastAPI).
* :class:`GuardWSGIMiddleware` wraps a WSGI application (gunicorn, waitress, Flask, Django).

Both answer a refused request the same way: HTTP 503, ``Retry-After``, and the
JSON body ``{"error": "service_suspended", "reason": ..., "since": ...}``.
"""

from __future__ import annotations

from breakglass.middleware.asgi import GuardMiddleware
from breakglass.middleware.wsgi import GuardWSGIMiddleware

__all__ = ["GuardMiddleware", "GuardWSGIMiddleware"]

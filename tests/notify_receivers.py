"""Local receivers that answer as PagerDuty, Opsgenie, Slack, Teams and a webhook consumer do.

One real HTTP server on loopback (a thread), written from each service's
documented API: the success bodies (PagerDuty's ``{"status": "success",
"dedup_key": …}``, Slack's ``ok``, Opsgenie's ``requestId`` and request
status), the documented errors, and deduplication where the service has it
(PagerDuty by ``dedup_key`` per routing key, Opsgenie by ``alias``, the
webhook consumer by ``webhook-id``). A test can plan the next answers of a
path (status, body, headers, delay) to play 400, 401/403, 404/410, 429 with
``Retry-After``, 5xx or a slow answer; with no plan, the service answers as
it does when healthy.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"
GENIE_KEY = "genie-key-for-tests"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 -- the test receiver's


@dataclass
class Planned:
    """One planned answer."""

    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receivers:
    """The services, on one loopback port. Thread-safe."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.plans: dict[str, deque[Planned]] = defaultdict(deque)
        self.pd_alerts: dict[tuple[str, str], dict[str, Any]] = {}
        self.pd_incidents: list[str] = []
        self.og_alerts: dict[str, dict[str, Any]] = {}
        self.og_requests: dict[str, dict[str, Any]] = {}
        self.webhook_ids: set[str] = set()
        self.webhook_events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                receivers._handle(self, "POST", body)

            def do_GET(self) -> None:
                receivers._handle(self, "GET", b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def plan(self, path: str, *answers: Planned) -> None:
        with self.lock:
            self.plans[path].extend(answers)

    def at(self, prefix: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                got = [r for r in self.requests if r.path.startswith(prefix)]
                if len(got) >= count or time.monotonic() > deadline:
                    return got
                self.arrived.wait(0.05)

    # ------------------------------------------------------------------ dispatch

    def _handle(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        path = handler.path
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self.arrived:
            self.requests.append(Received(path, headers, body, time.monotonic()))
            self.arrived.notify_all()
            plans = self.plans.get(path.split("?")[0])
            planned = plans.popleft() if plans else None
        if planned is not None:
            if planned.delay:
                time.sleep(planned.delay)
            if planned.status:
                self._send(handler, planned.status, planned.body, planned.headers)
                return
        status, answer, extra = self._answer(method, path, headers, body)
        self._send(handler, status, answer, extra)

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, body: str, headers: dict[str, str]
    ) -> None:
        data = body.encode()
        try:
            handler.send_response(status)
            content_type = "application/json" if body.startswith("{") else "text/plain"
            handler.send_header("content-type", headers.pop("content-type", content_type))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, dict[str, str]]:
        if path == "/v2/enqueue":
            return self._pagerduty(body)
        if path.startswith("/v2/alerts"):
            return self._opsgenie(method, path, headers, body)
        if path.startswith("/slack/"):
            return self._slack(body)
        if path.startswith("/teams/"):
            return (
                (202, "", {})
                if _is_json(body)
                else (400, '{"error":{"code":"InvalidRequestContent"}}', {})
            )
        if path.startswith("/hook"):
            return self._webhook(headers, body)
        return 404, "not found", {}

    def _pagerduty(self, body: bytes) -> tuple[int, str, dict[str, str]]:
        try:
            event = json.loads(body)
        except ValueError:
            return (
                400,
                '{"status":"invalid event","message":"Event object is invalid","errors":["Malformed JSON"]}',
                {},
            )
        errors = []
        if len(str(event.get("routing_key", ""))) != 32:
            errors.append("'routing_key' must be 32 characters")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        key = event.get("dedup_key")
        if action == "trigger":
            payload = event.get("payload") or {}
            errors += [
                f"'payload.{n}' is missing or blank"
                for n in ("summary", "source", "severity")
                if not payload.get(n)
            ]
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("'payload.severity' is invalid")
        elif not key:
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if errors:
            return (
                400,
                json.dumps(
                    {
                        "status": "invalid event",
                        "message": "Event object is invalid",
                        "errors": errors,
                    }
                ),
                {},
            )
        key = key or uuid.uuid4().hex
        with self.lock:
            slot = (event["routing_key"], key)
            if action == "trigger" and slot not in self.pd_alerts:
                self.pd_alerts[slot] = event
                self.pd_incidents.append(key)
            elif action == "resolve":
                self.pd_alerts.pop(slot, None)
        return (
            202,
            json.dumps({"status": "success", "message": "Event processed", "dedup_key": key}),
            {},
        )

    def _opsgenie(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, dict[str, str]]:
        request_id = str(uuid.uuid4())
        if headers.get("authorization") != f"GenieKey {GENIE_KEY}":
            return (
                401,
                json.dumps(
                    {"message": "Could not authenticate", "took": 0.0, "requestId": request_id}
                ),
                {},
            )
        found = re.match(r"^/v2/alerts/requests/([^/?]+)$", path)
        if method == "GET" and found:
            with self.lock:
                status = self.og_requests.get(found.group(1))
            if status is None:
                return (
                    404,
                    json.dumps(
                        {"message": "Request not found", "took": 0.0, "requestId": request_id}
                    ),
                    {},
                )
            return 200, json.dumps({"data": status, "took": 0.01, "requestId": request_id}), {}
        closing = re.match(r"^/v2/alerts/([^/?]+)/close\?identifierType=alias$", path)
        if method == "POST" and closing:
            with self.lock:
                self.og_alerts.pop(closing.group(1).replace("%2F", "/"), None)
                self.og_requests[request_id] = {
                    "success": True,
                    "action": "Close",
                    "isSuccess": True,
                    "status": "Closed alert",
                }
            return (
                202,
                json.dumps(
                    {"result": "Request will be processed", "took": 0.1, "requestId": request_id}
                ),
                {},
            )
        if method == "POST" and path == "/v2/alerts":
            data = json.loads(body)
            if not data.get("message"):
                return (
                    422,
                    json.dumps(
                        {
                            "message": "Request body is not processable",
                            "errors": {"message": "Message can not be empty."},
                            "took": 0.0,
                            "requestId": request_id,
                        }
                    ),
                    {},
                )
            with self.lock:
                alias = data.get("alias") or request_id
                self.og_alerts.setdefault(alias, data)
                self.og_requests[request_id] = {
                    "success": True,
                    "action": "Create",
                    "isSuccess": True,
                    "status": "Created alert",
                    "alertId": f"alert-{alias}",
                    "alias": alias,
                }
            return (
                202,
                json.dumps(
                    {"result": "Request will be processed", "took": 0.3, "requestId": request_id}
                ),
                {},
            )
        return 404, json.dumps({"message": "Not found", "took": 0.0, "requestId": request_id}), {}

    def _slack(self, body: bytes) -> tuple[int, str, dict[str, str]]:
        try:
            data = json.loads(body)
        except ValueError:
            return 400, "invalid_payload", {}
        if not data.get("text") and not data.get("blocks"):
            return 400, "no_text", {}
        return 200, "ok", {}

    def _webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, str, dict[str, str]]:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        try:
            payload = Webhook(WEBHOOK_SECRET).verify(body, headers)
        except WebhookVerificationError:
            return 401, "bad signature", {}
        with self.lock:
            if headers["webhook-id"] not in self.webhook_ids:
                self.webhook_ids.add(headers["webhook-id"])
                self.webhook_events.append(payload)
        return 204, "", {}


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def wait_until(check: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds passed; return its last truth."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())

"""A LaunchDarkly-protocol server on loopback, for tests, the benchmark and the example.

It speaks the parts of LaunchDarkly that breakglass uses, with the payload
shapes LaunchDarkly documents for its SDK protocol and REST API v2:

* SDK side (``Authorization: <sdk key>``): the streaming endpoint ``GET /all``
  (SSE ``put`` first, then ``patch`` with increasing versions and ``delete``,
  heartbeat comments in between, chunked like the real stream) and the polling
  endpoint ``GET /sdk/latest-all`` (with ``ETag`` / ``If-None-Match``).
* REST API v2 (``Authorization: <access token>``): ``GET`` and ``PATCH
  /api/v2/flags/{project}/{flag}`` (semantic patch ``turnFlagOn`` /
  ``turnFlagOff`` with ``environmentKey`` and ``comment``; a JSON patch of
  ``/environments/{env}/on`` as well), which pushes a ``patch`` event to every
  open stream, and the audit log ``GET /api/v2/auditlog`` (``spec``, ``after``,
  ``before``, ``limit`` <= 20, newest first, paged through ``_links.next``) with
  ``GET /api/v2/auditlog/{id}`` (``previousVersion`` / ``currentVersion``).
* Events (``POST /bulk``, ``/diagnostic``): accepted and dropped.

A test can take it away (:meth:`stop`: connections refused), freeze it
(:meth:`stall`: connections stay open, nothing is sent), make it answer garbage
(:meth:`serve_garbage`), rate-limit or fail the next REST calls, and bring it
back on the same port (:meth:`restore`). Only the standard library is used, and
it binds to loopback only.

Run it by hand for the example and the benchmark::

    .venv/bin/python providers/breakglass-launchdarkly/tests/launchdarkly_tests/fake_ld.py --port 8765
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import http.server
import itertools
import json
import queue
import secrets
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

HOST = "127.0.0.1"
SEMANTIC_PATCH = "domain-model=launchdarkly.semanticpatch"
MAX_AUDIT_LIMIT = 20
_CLOSE = object()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class _Flag:
    """One flag in the one environment the fake serves."""

    key: str
    variations: list[Any]
    on: bool
    version: int  # the SDK-side (environment) version, bumped on every change
    rest_version: int  # the REST `_version`
    created: int
    deleted: bool = False
    last_modified: int = 0
    # Targeting, in the shapes LaunchDarkly's flag data uses (SDK and REST alike).
    off_variation: int | None = None  # None: the default, the last variation
    fallthrough_variation: int = 0
    prerequisites: list[dict[str, Any]] = field(default_factory=list)
    context_targets: list[dict[str, Any]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)

    def targeting(self) -> dict[str, Any]:
        off = self.off_variation
        return {
            "prerequisites": [dict(p) for p in self.prerequisites],
            "offVariation": (1 if len(self.variations) > 1 else 0) if off is None else off,
            "fallthrough": {"variation": self.fallthrough_variation},
            "targets": [],
            "contextTargets": [dict(t) for t in self.context_targets],
            "rules": [dict(r) for r in self.rules],
        }

    def sdk_json(self) -> dict[str, Any]:
        if self.deleted:
            return {"key": self.key, "version": self.version, "deleted": True}
        return {
            "key": self.key,
            "version": self.version,
            "on": self.on,
            "variations": list(self.variations),
            "salt": "",
            **self.targeting(),
            "trackEvents": False,
            "trackEventsFallthrough": False,
            "debugEventsUntilDate": None,
            "clientSide": False,
            "deleted": False,
        }


@dataclass
class _Stream:
    """One open ``GET /all`` connection."""

    queue: queue.Queue[object] = field(default_factory=queue.Queue)


class FakeLaunchDarkly:
    """A LaunchDarkly (SDK endpoints, REST API v2, audit log) on one loopback port.

    Args:
        sdk_key: The SDK key the stream and polling endpoints accept (random if ``None``).
        api_token: The access token the REST API accepts (random if ``None``).
        project: The project key.
        environment: The environment key (the fake serves one environment).
        port: The port to bind (0: a free one, kept across :meth:`stop` / :meth:`start`).
        heartbeat_interval: Seconds between SSE heartbeat comments on idle streams.
    """

    def __init__(
        self,
        *,
        sdk_key: str | None = None,
        api_token: str | None = None,
        project: str = "default",
        environment: str = "production",
        port: int = 0,
        heartbeat_interval: float = 1.0,
    ) -> None:
        self.sdk_key = sdk_key or f"sdk-{secrets.token_hex(16)}"
        self.api_token = api_token or f"api-{secrets.token_hex(16)}"
        self.reader_token = f"api-reader-{secrets.token_hex(12)}"
        """An access token that may read but not write (403 on PATCH)."""
        self.project = project
        self.environment = environment
        self.heartbeat_interval = heartbeat_interval
        self.port = port
        self._lock = threading.RLock()
        self._flags: dict[str, _Flag] = {}
        self._rest_version = itertools.count(1)
        self._data_version = 0
        self._audit: list[dict[str, Any]] = []
        self._audit_detail: dict[str, dict[str, Any]] = {}
        self._audit_seq = itertools.count(1)
        self._last_audit_ms = 0
        self._streams: list[_Stream] = []
        self._sockets: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._unstalled = threading.Event()
        self._unstalled.set()
        self._stall_stream = False
        self._stall_poll = False
        self._garbage = False
        self._stream_down = False
        self._stopping = threading.Event()
        self._fail_next: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.requests: dict[str, int] = {}
        """Requests served, by ``"METHOD /path-kind"`` (for assertions on load)."""

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The base URL: use it as ``base_uri``, ``stream_uri``, ``events_uri`` and the API base."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server accepts connections."""
        return self._server is not None

    def start(self) -> FakeLaunchDarkly:
        """Bind (the same port after a :meth:`stop`) and serve on a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((HOST, self.port), _Handler)
        server.fake = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-launchdarkly",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Take the server away: close the listener and every open connection (connections refused)."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._stopping.set()
        server.shutdown()
        server.server_close()
        self._drop_connections()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def close(self) -> None:
        """Stop for good."""
        self._unstalled.set()
        self.stop()

    def stall(self, *, stream: bool = True, poll: bool = True) -> None:
        """Freeze the SDK endpoints: connections stay open, and nothing more is sent on them.

        New requests are accepted and never answered; open streams get no more
        events and no heartbeats. The REST API keeps answering.
        """
        with self._lock:
            self._stall_stream = stream
            self._stall_poll = poll
            self._unstalled.clear()

    def serve_garbage(self) -> None:
        """Make the SDK endpoints fail: open streams get a truncated event, new ones 503, polls a truncated body."""
        with self._lock:
            self._garbage = True
            streams = list(self._streams)
        for stream in streams:
            stream.queue.put(b'event: put\ndata: {"path": "/", "data": {"flags": {"sys\n\n')
            stream.queue.put(_CLOSE)

    def break_stream(self) -> None:
        """Take only the streaming endpoint away: open streams close, new ones get 503; polling still works."""
        with self._lock:
            self._stream_down = True
            streams = list(self._streams)
        for stream in streams:
            stream.queue.put(_CLOSE)

    def restore(self) -> None:
        """Undo :meth:`stop`, :meth:`stall`, :meth:`serve_garbage` and :meth:`break_stream`; frozen connections are closed."""
        with self._lock:
            self._garbage = False
            self._stream_down = False
            self._stall_stream = False
            self._stall_poll = False
            self._fail_next.clear()
        if not self._unstalled.is_set():
            self._unstalled.set()
            # A frozen connection is a dead one: clients reconnect and get a fresh `put`.
            self._drop_connections()
        self.start()

    def _drop_connections(self) -> None:
        with self._lock:
            streams = list(self._streams)
            sockets = list(self._sockets)
        for stream in streams:
            stream.queue.put(_CLOSE)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ the dashboard

    def add_flag(self, key: str, *, on: bool = True, variations: list[Any] | None = None) -> None:
        """Create a flag (boolean ``[true, false]`` unless told otherwise), as the dashboard would."""
        with self._lock:
            now = _now_ms()
            flag = _Flag(
                key=key,
                variations=[True, False] if variations is None else variations,
                on=on,
                version=1,
                rest_version=next(self._rest_version),
                created=now,
                last_modified=now,
            )
            old = self._flags.get(key)
            if old is not None:
                flag.version = old.version + 1
                flag.created = old.created
            self._flags[key] = flag
            self._audit_entry(flag, "createFlag", "created the flag", None, None, env_wide=True)
            self._publish_patch(flag)

    def set_on(self, key: str, on: bool, *, comment: str | None = None) -> None:
        """Turn the flag's targeting on or off, as a member in the dashboard would."""
        with self._lock:
            flag, changed = self._toggle(key, on, comment=comment, actor=_MEMBER)
            if flag is not None and changed:
                self._publish_patch(flag)

    def set_variations(self, key: str, variations: list[Any]) -> None:
        """Replace the flag's variations (e.g. strings: a wrong type for a boolean reader)."""
        with self._lock:
            flag = self._flags[key]
            before = self._rest_json(flag)
            flag.variations = variations
            self._bump(flag)
            self._audit_entry(flag, "updateVariations", "updated the variations of", before, None)
            self._publish_patch(flag)

    def set_targeting(
        self,
        key: str,
        *,
        off_variation: int | None = None,
        fallthrough_variation: int = 0,
        prerequisites: list[dict[str, Any]] | None = None,
        context_targets: list[dict[str, Any]] | None = None,
        rules: list[dict[str, Any]] | None = None,
    ) -> None:
        """Set the flag's off variation, default rule, prerequisites, targets and rules, as the dashboard would.

        Shapes as in LaunchDarkly's flag data: a prerequisite is ``{"key", "variation"}``, a
        context target ``{"contextKind", "values", "variation"}``, a rule ``{"id", "variation",
        "clauses": [{"contextKind", "attribute", "op", "values", "negate"}]}``.
        """
        with self._lock:
            flag = self._flags[key]
            before = self._rest_json(flag)
            flag.off_variation = off_variation
            flag.fallthrough_variation = fallthrough_variation
            flag.prerequisites = list(prerequisites or [])
            flag.context_targets = list(context_targets or [])
            flag.rules = list(rules or [])
            self._bump(flag)
            self._audit_entry(flag, "updateTargeting", "updated the targeting of", before, None)
            self._publish_patch(flag)

    def delete_flag(self, key: str) -> None:
        """Delete the flag (readers get a stream ``delete``)."""
        with self._lock:
            flag = self._flags[key]
            before = self._rest_json(flag)
            flag.deleted = True
            self._bump(flag)
            self._audit_entry(flag, "deleteFlag", "deleted the flag", before, None, env_wide=True)
            event = {"path": f"/flags/{key}", "version": flag.version}
            self._publish(b"event: delete\ndata: " + _json_bytes(event) + b"\n\n")

    def flag_on(self, key: str) -> bool | None:
        """The flag's targeting state, ``None`` when it does not exist."""
        with self._lock:
            flag = self._flags.get(key)
            return None if flag is None or flag.deleted else flag.on

    def sdk_version(self, key: str) -> int | None:
        """The flag's SDK-side version."""
        with self._lock:
            flag = self._flags.get(key)
            return None if flag is None else flag.version

    def rate_limit(
        self, count: int, *, retry_after: float | None = 1, reset_in: float | None = None
    ) -> None:
        """Answer the next ``count`` REST calls with 429 (``Retry-After`` and/or ``X-Ratelimit-Reset``)."""
        headers = {"X-Ratelimit-Route-Remaining": "0"}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        if reset_in is not None:
            headers["X-Ratelimit-Reset"] = str(_now_ms() + int(reset_in * 1000))
        body = {"code": "rate_limited", "message": "You've exceeded the API rate limit."}
        with self._lock:
            self._fail_next.extend([(429, headers, body)] * count)

    def fail_next(self, status: int, count: int = 1, message: str = "injected failure") -> None:
        """Answer the next ``count`` REST calls with ``status``."""
        with self._lock:
            self._fail_next.extend(
                [(status, {}, {"code": "injected", "message": message, "id": "x"})] * count
            )

    def audit_entries(self) -> list[dict[str, Any]]:
        """Every audit entry, oldest first (listing form)."""
        with self._lock:
            return [dict(entry) for entry in self._audit]

    # ------------------------------------------------------------------ internals (lock held)

    def _bump(self, flag: _Flag) -> None:
        flag.version += 1
        flag.rest_version = next(self._rest_version)
        flag.last_modified = _now_ms()

    def _toggle(
        self, key: str, on: bool, *, comment: str | None, actor: dict[str, Any]
    ) -> tuple[_Flag | None, bool]:
        """Change the state; the caller publishes the ``patch`` (returns the flag and whether it changed)."""
        flag = self._flags.get(key)
        if flag is None or flag.deleted:
            return None, False
        if flag.on == on:
            return flag, False  # already so: success, nothing changes, nothing is logged
        before = self._rest_json(flag)
        flag.on = on
        self._bump(flag)
        verb = "turned on the flag" if on else "turned off the flag"
        self._audit_entry(flag, "updateOn", verb, before, comment, actor=actor)
        return flag, True

    def _publish_patch(self, flag: _Flag) -> None:
        event = {"path": f"/flags/{flag.key}", "data": flag.sdk_json()}
        self._publish(b"event: patch\ndata: " + _json_bytes(event) + b"\n\n")

    def _publish(self, payload: bytes) -> None:
        self._data_version += 1
        for stream in self._streams:
            stream.queue.put(payload)

    def _put_payload(self) -> bytes:
        data = {"path": "/", "data": {"flags": self._sdk_flags(), "segments": {}}}
        return b"event: put\ndata: " + _json_bytes(data) + b"\n\n"

    def _sdk_flags(self) -> dict[str, Any]:
        return {key: f.sdk_json() for key, f in self._flags.items() if not f.deleted}

    def _rest_json(self, flag: _Flag) -> dict[str, Any]:
        env = {
            "on": flag.on,
            "archived": False,
            "salt": "",
            "sel": "",
            "lastModified": flag.last_modified,
            "version": flag.version,
            **flag.targeting(),
            "_site": {"href": f"/{self.project}/{self.environment}/features/{flag.key}"},
            "_environmentName": self.environment.title(),
            "trackEvents": False,
            "trackEventsFallthrough": False,
        }
        return {
            "key": flag.key,
            "name": flag.key,
            "kind": "boolean" if flag.variations == [True, False] else "multivariate",
            "_version": flag.rest_version,
            "creationDate": flag.created,
            "archived": False,
            "deprecated": False,
            "temporary": False,
            "tags": [],
            "variations": [
                {"_id": f"var-{i}", "value": value} for i, value in enumerate(flag.variations)
            ],
            "defaults": {"onVariation": 0, "offVariation": 1},
            "environments": {self.environment: env},
            "_links": {
                "self": {
                    "href": f"/api/v2/flags/{self.project}/{flag.key}",
                    "type": "application/json",
                }
            },
        }

    def _audit_entry(
        self,
        flag: _Flag,
        action: str,
        verb: str,
        before: dict[str, Any] | None,
        comment: str | None,
        *,
        actor: dict[str, Any] | None = None,
        env_wide: bool = False,
    ) -> None:
        actor = actor or _MEMBER
        seq = next(self._audit_seq)
        entry_id = f"{seq:024x}"
        # Strictly increasing dates, so `before`/`after` paging never splits a millisecond.
        date = max(_now_ms(), self._last_audit_ms + 1)
        self._last_audit_ms = date
        env = "*" if env_wide else self.environment
        resource = f"proj/{self.project}:env/{env}:flag/{flag.key}"
        who = actor.get("member", {}).get("firstName") or actor.get("token", {}).get("name")
        entry: dict[str, Any] = {
            "_links": {
                "self": {"href": f"/api/v2/auditlog/{entry_id}", "type": "application/json"}
            },
            "_id": entry_id,
            "_accountId": "a" * 24,
            "date": date,
            "accesses": [{"action": action, "resource": resource}],
            "kind": "flag",
            "name": flag.key,
            "description": f"- {verb} `{flag.key}`",
            "shortDescription": f"{verb} {flag.key}",
            "comment": comment,
            "subject": {"_links": {}, "name": who, "avatarUrl": ""},
            "titleVerb": verb,
            "title": f"{who} {verb} {flag.key} in {self.environment.title()}",
            "target": {"_links": {}, "name": flag.key, "resources": [resource]},
            "parent": {"_links": {}, "name": "Default project", "resource": f"proj/{self.project}"},
            **actor,
        }
        self._audit.append(entry)
        self._audit_detail[entry_id] = {
            **entry,
            "delta": None,
            "triggerBody": None,
            "merge": None,
            "previousVersion": before,
            "currentVersion": None if flag.deleted else self._rest_json(flag),
            "subentries": [],
        }

    # ------------------------------------------------------------------ request handling

    def _count(self, key: str) -> None:
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1

    def _wait_while_stalled(self, handler: _Handler, which: str) -> bool:
        """Hold a request while its endpoint is frozen; ``True`` when it must go unanswered."""
        with self._lock:
            frozen = self._stall_stream if which == "stream" else self._stall_poll
        if not frozen or self._unstalled.is_set():
            return False
        while not self._unstalled.wait(0.05):
            if self._stopping.is_set():
                break
        handler.close_connection = True
        return True

    def handle_stream(self, handler: _Handler) -> None:
        self._count("GET /all")
        if handler.headers.get("Authorization") != self.sdk_key:
            handler.send_json(401, {"code": "unauthorized", "message": "Invalid SDK key"})
            return
        if self._wait_while_stalled(handler, "stream"):
            return
        with self._lock:
            if self._garbage or self._stream_down:
                handler.send_json(503, {"code": "unavailable", "message": "try later"})
                return
            stream = _Stream()
            stream.queue.put(self._put_payload())
            self._streams.append(stream)
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
            handler.send_header("Cache-Control", "no-cache")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.send_header("X-LD-EnvID", "fake-env-id")
            handler.end_headers()
            self._pump(handler, stream)
        except OSError:
            pass
        finally:
            with self._lock:
                if stream in self._streams:
                    self._streams.remove(stream)
            handler.close_connection = True

    def _pump(self, handler: _Handler, stream: _Stream) -> None:
        last_sent = time.monotonic()
        while not self._stopping.is_set():
            try:
                item = stream.queue.get(timeout=0.05)
            except queue.Empty:
                if _peer_closed(handler.connection):
                    return  # the client hung up: free this thread now, not at the next heartbeat
                if time.monotonic() - last_sent < self.heartbeat_interval:
                    continue
                item = b":\n\n"  # heartbeat comment
            if item is _CLOSE:
                return
            with self._lock:
                frozen = self._stall_stream and not self._unstalled.is_set()
            if frozen:
                # A frozen connection: hold it open and send nothing, until restore() drops it.
                while not self._unstalled.wait(0.05):
                    if self._stopping.is_set():
                        return
                return
            assert isinstance(item, bytes)
            handler.write_chunk(item)
            last_sent = time.monotonic()

    def handle_poll(self, handler: _Handler) -> None:
        self._count("GET /sdk/latest-all")
        if handler.headers.get("Authorization") != self.sdk_key:
            handler.send_json(401, {"code": "unauthorized", "message": "Invalid SDK key"})
            return
        if self._wait_while_stalled(handler, "poll"):
            return
        with self._lock:
            if self._garbage:
                body = b'{"flags": {"sys'
                handler.send_raw(200, body, {"Content-Type": "application/json"})
                return
            etag = f'"fake-{self._data_version}"'
            if handler.headers.get("If-None-Match") == etag:
                self._count("304 /sdk/latest-all")
                handler.send_raw(304, b"", {"ETag": etag})
                return
            payload = _json_bytes({"flags": self._sdk_flags(), "segments": {}})
        handler.send_raw(200, payload, {"Content-Type": "application/json", "ETag": etag})

    def handle_rest(self, handler: _Handler, method: str) -> None:
        parts = urlsplit(handler.path)
        segments = [s for s in parts.path.split("/") if s]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self._count(f"{method} /api/v2/{segments[2] if len(segments) > 2 else ''}")
        token = handler.headers.get("Authorization")
        if token not in (self.api_token, self.reader_token):
            handler.send_json(401, {"code": "unauthorized", "message": "Invalid access token"})
            return
        with self._lock:
            failure = self._fail_next.pop(0) if self._fail_next else None
        if failure is not None:
            status, headers, body = failure
            handler.send_json(status, body, headers)
            return
        route = segments[2:] if segments[:2] == ["api", "v2"] else []
        if route[:1] == ["flags"] and len(route) == 3:
            if method == "GET":
                self._get_flag(handler, route[1], route[2], query)
            elif token != self.api_token:
                handler.send_json(
                    403,
                    {"code": "forbidden", "message": "Access to the requested resource was denied"},
                )
            else:
                self._patch_flag(handler, route[1], route[2])
            return
        if route[:1] == ["auditlog"] and method == "GET":
            if len(route) == 1:
                self._audit_list(handler, query)
                return
            if len(route) == 2:
                self._audit_get(handler, route[1])
                return
        handler.send_json(404, {"code": "not_found", "message": "Invalid resource identifier"})

    def _get_flag(self, handler: _Handler, project: str, key: str, query: dict[str, str]) -> None:
        with self._lock:
            flag = self._flags.get(key)
            if project != self.project or flag is None or flag.deleted:
                handler.send_json(404, {"code": "not_found", "message": "Unknown resource"})
                return
            body = self._rest_json(flag)
        env = query.get("env")
        if env is not None and env != self.environment:
            body["environments"] = {}
        handler.send_json(200, body)

    def _patch_flag(self, handler: _Handler, project: str, key: str) -> None:
        try:
            body = json.loads(handler.read_body() or b"null")
        except ValueError:
            handler.send_json(400, {"code": "invalid_request", "message": "malformed JSON"})
            return
        parsed = _parse_patch(body, handler.headers.get("Content-Type", ""))
        if isinstance(parsed[0], int):
            status, message = parsed
            code = "unsupported_media_type" if status == 415 else "invalid_request"
            handler.send_json(status, {"code": code, "message": message})
            return
        env, target_on = parsed
        comment = body.get("comment") if isinstance(body, dict) else None
        with self._lock:
            if project != self.project:
                handler.send_json(404, {"code": "not_found", "message": "Unknown project"})
                return
            if env != self.environment:
                handler.send_json(
                    400, {"code": "invalid_request", "message": "Unknown environment key"}
                )
                return
            flag, changed = self._toggle(
                key, bool(target_on), comment=comment, actor=self._token_actor()
            )
            if flag is None:
                handler.send_json(404, {"code": "not_found", "message": "Unknown flag"})
                return
            payload = self._rest_json(flag)
        # Like LaunchDarkly: the write is acknowledged, then fanned out to the streams.
        handler.send_json(200, payload)
        if changed:
            with self._lock:
                self._publish_patch(flag)

    def _token_actor(self) -> dict[str, Any]:
        return {
            "token": {
                "_links": {},
                "_id": "t" * 24,
                "name": "breakglass service token",
                "ending": self.api_token[-4:],
                "serviceToken": True,
            }
        }

    def _audit_list(self, handler: _Handler, query: dict[str, str]) -> None:
        try:
            limit = int(query.get("limit", "10"))
            after = int(query["after"]) if "after" in query else None
            before = int(query["before"]) if "before" in query else None
        except ValueError:
            handler.send_json(400, {"code": "invalid_request", "message": "bad number"})
            return
        if not 1 <= limit <= MAX_AUDIT_LIMIT:
            handler.send_json(400, {"code": "invalid_request", "message": "limit must be 1..20"})
            return
        spec = query.get("spec")
        with self._lock:
            items = [
                e
                for e in reversed(self._audit)
                if (after is None or e["date"] > after)
                and (before is None or e["date"] < before)
                and (spec is None or any(_spec_match(spec, a["resource"]) for a in e["accesses"]))
            ]
        page = items[:limit]
        links: dict[str, Any] = {
            "self": {"href": handler.path, "type": "application/json"},
        }
        if len(items) > limit:
            params = {"limit": str(limit), "before": str(page[-1]["date"])}
            if after is not None:
                params["after"] = str(after)
            if spec is not None:
                params["spec"] = spec
            links["next"] = {
                "href": "/api/v2/auditlog?" + urlencode(params, quote_via=quote),
                "type": "application/json",
            }
        handler.send_json(200, {"items": page, "_links": links})

    def _audit_get(self, handler: _Handler, entry_id: str) -> None:
        with self._lock:
            entry = self._audit_detail.get(entry_id)
        if entry is None:
            handler.send_json(404, {"code": "not_found", "message": "Unknown audit log entry"})
            return
        handler.send_json(200, entry)


def _parse_patch(body: Any, content_type: str) -> tuple[str, bool] | tuple[int, str]:
    """``(environment, on)`` from a semantic or JSON patch body, or ``(status, message)``."""
    if SEMANTIC_PATCH in content_type:
        if not isinstance(body, dict) or not isinstance(body.get("instructions"), list):
            return 400, "instructions are required"
        kinds = [i.get("kind") if isinstance(i, dict) else None for i in body["instructions"]]
        if not kinds or any(k not in ("turnFlagOn", "turnFlagOff") for k in kinds):
            return 400, "unsupported instruction"
        env = body.get("environmentKey")
        if not isinstance(env, str) or not env:
            return 400, "environmentKey is required"
        return env, kinds[-1] == "turnFlagOn"
    if not content_type.startswith("application/json"):
        return 415, "use JSON"
    patch = body.get("patch") if isinstance(body, dict) else body
    found: tuple[str, bool] | None = None
    for op in patch if isinstance(patch, list) else []:
        path = op.get("path", "") if isinstance(op, dict) else ""
        bits = path.strip("/").split("/") if isinstance(path, str) else []
        value = op.get("value") if isinstance(op, dict) else None
        if (
            op.get("op") == "replace"
            and len(bits) == 3
            and bits[0] == "environments"
            and bits[2] == "on"
            and type(value) is bool
        ):
            found = (bits[1], value)
    return found if found is not None else (400, "unsupported patch")


_MEMBER: dict[str, Any] = {
    "member": {
        "_links": {},
        "_id": "507f1f77bcf86cd799439011",
        "email": "ariel@example.com",
        "firstName": "Ariel",
        "lastName": "Flores",
    }
}


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the client closed its end (an SSE client never sends anything after its request)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _spec_match(spec: str, resource: str) -> bool:
    """Whether a resource specifier matches a resource (``*`` on either side matches a part)."""
    wanted = spec.split(":")
    have = dict(part.split("/", 1) for part in resource.split(":") if "/" in part)
    for part in wanted:
        if "/" not in part:
            return False
        kind, name = part.split("/", 1)
        actual = have.get(kind)
        if actual is None:
            return False
        if not (fnmatch.fnmatchcase(actual, name) or fnmatch.fnmatchcase(name, actual)):
            return False
    return True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeLaunchDarkly


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: no Nagle / delayed-ACK stalls of 40 ms on loopback.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024
    server: _Server
    routes: ClassVar[dict[str, str]] = {"/all": "stream", "/sdk/latest-all": "poll"}

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake._sockets.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.fake._lock:
            self.server.fake._sockets.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        """Quiet: tests read their own logs."""

    def do_GET(self) -> None:
        fake = self.server.fake
        path = urlsplit(self.path).path
        route = self.routes.get(path)
        if route == "stream":
            fake.handle_stream(self)
        elif route == "poll":
            fake.handle_poll(self)
        elif path.startswith("/api/v2/"):
            fake.handle_rest(self, "GET")
        else:
            self.send_json(404, {"code": "not_found", "message": "no such path"})

    def do_PATCH(self) -> None:
        if urlsplit(self.path).path.startswith("/api/v2/"):
            self.server.fake.handle_rest(self, "PATCH")
        else:
            self.send_json(404, {"code": "not_found", "message": "no such path"})

    def do_POST(self) -> None:
        self.server.fake._count(f"POST {urlsplit(self.path).path}")
        self.read_body()
        self.send_raw(202, b"", {})  # analytics / diagnostic events: accepted, dropped

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_raw(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send_raw(
            status, _json_bytes(body), {"Content-Type": "application/json", **(headers or {})}
        )

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def main() -> None:  # pragma: no cover -- a manual tool
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--sdk-key", default=None)
    parser.add_argument("--api-token", default=None)
    parser.add_argument("--flag", action="append", default=[], help="KEY=true|false|<json>")
    args = parser.parse_args()
    fake = FakeLaunchDarkly(port=args.port, sdk_key=args.sdk_key, api_token=args.api_token)
    fake.add_flag("system-active", on=True)
    for spec in args.flag:
        key, _, value = spec.partition("=")
        parsed = json.loads(value or "true")
        if type(parsed) is bool:
            fake.add_flag(key, on=parsed)
        else:
            fake.add_flag(key, variations=[parsed, parsed])
    fake.start()
    print(f"export BREAKGLASS_PROVIDER=launchdarkly")  # noqa: F541 -- shell lines, printed as is
    for name in ("BASE_URI", "STREAM_URI", "EVENTS_URI", "API_BASE_URL"):
        print(f"export BREAKGLASS_LAUNCHDARKLY__{name}={fake.url}")
    print(f"export BREAKGLASS_LAUNCHDARKLY__SDK_KEY={fake.sdk_key}")
    print(f"export BREAKGLASS_LAUNCHDARKLY__API_TOKEN={fake.api_token}")
    print(f"export BREAKGLASS_LAUNCHDARKLY__PROJECT_KEY={fake.project}")
    print(f"export BREAKGLASS_LAUNCHDARKLY__ENVIRONMENT_KEY={fake.environment}", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        # The load the readers put on "the vendor", for benchmarks/propagation_relay.py.
        print("requests " + json.dumps(fake.requests, sort_keys=True), flush=True)
        fake.close()


def _interrupt(signum: int, frame: object) -> None:
    del signum, frame
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()

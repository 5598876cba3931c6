"""A Flagsmith-protocol server on loopback, built from payloads captured from a real Flagsmith.

The real Flagsmith API (Django + PostgreSQL) cannot be installed from the
registries this project reaches, so the tests run the real ``flagsmith`` SDK
against this server instead. Every answer starts from a captured payload in
``../fixtures`` (Flagsmith 2.68.0, see ``fixtures/README.md``) and only the
feature state is mutated: the environment document, ``/flags/``, the
feature-state list/detail/PATCH, the v2 versions endpoint, the project audit
log (list + detail) and the subscription metadata.

What it does like the real server (as observed on a self-hosted Flagsmith 2.68):

* ``/environment-document/`` needs the server-side key; a client key gets 403
  ``{"detail": "Invalid or missing Environment key"}`` (sample 21).
* Management calls take ``Authorization: Token …`` (audit author = the user) or
  ``Api-Key …`` (audit author ``null``).
* A PATCH on a v2-versioned environment is refused with 400 (sample 55).
* Audit rows appear asynchronously (``audit_delay``), newest first, paged with
  absolute ``next`` links; with ``audit_log_visibility_days`` 0 the list is
  empty and the detail 404 (samples 31, 32, 42).
* An update that changes nothing writes no audit row.

Test controls: :meth:`stop` / :meth:`start` (same port; open keep-alive
connections are cut), :meth:`stall` (connections accepted, nothing answers),
:attr:`mode` ``"garbage"`` (5xx, malformed JSON, truncated bodies in turn),
:meth:`delete_feature`, :attr:`document_hook` (mutate the document served).
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HOST = "127.0.0.1"
FEATURE = "system-active"
OTHER_FEATURE = "system-active-probe"
"""A second feature whose name contains the first: audit ``search`` matches both."""

STALL_LIMIT = 30.0
"""Seconds a stalled request is held at most (every wait is bounded)."""

GARBAGE_500 = '\n<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n'


def sample(name: str) -> Any:
    """The ``body`` of a captured payload, e.g. ``sample("20-environment-document")``."""
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    return data["body"]


def drf_time(moment: datetime) -> str:
    """Django REST framework's time format, as in the samples: ``2026-11-27T22:48:29.562979Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Feature:
    """One feature and its environment-default feature state."""

    id: int
    name: str
    state_id: int
    state_uuid: str
    enabled: bool
    created: datetime
    updated: datetime
    exists: bool = True


@dataclass
class AuditEntry:
    """One audit row (the detail shape) and when it becomes visible."""

    detail: dict[str, Any]
    visible_at: float

    @property
    def id(self) -> int:
        return int(self.detail["id"])

    def listed(self) -> dict[str, Any]:
        return {k: v for k, v in self.detail.items() if k not in ("change_details", "change_type")}


@dataclass
class Counters:
    """Requests seen, per endpoint kind (for the polling-load figures)."""

    by_kind: dict[str, int] = field(default_factory=dict)

    def hit(self, kind: str) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


class FlagsmithServer:
    """The protocol server. Start it with :meth:`start` (or use it as a context manager).

    Attributes:
        server_key: The environment's server-side SDK key (``ser.…``, random per server).
        client_key: The environment's client-side key (from the samples; not a secret).
        user_token: A user's ``Token`` credential (random per server).
        master_key: An organisation ``Api-Key`` credential (random per server).
    """

    def __init__(self, *, audit_delay: float = 0.05, port: int = 0) -> None:
        self._lock = threading.RLock()
        self.project: dict[str, Any] = sample("03-project-create")
        self.environment: dict[str, Any] = sample("04-environment-create-production")
        self.environment.pop("metadata", None)  # not part of EnvironmentSerializerLight
        self._feature_template: dict[str, Any] = sample("05-feature-create")
        self.user: dict[str, Any] = self._feature_template["owners"][0]
        self.client_key: str = self.environment["api_key"]
        self.server_key = f"ser.{secrets.token_urlsafe(16)}"
        self.user_token = secrets.token_hex(20)
        self.master_key = f"{secrets.token_urlsafe(6)[:8]}.{secrets.token_urlsafe(24)}"
        self.audit_delay = audit_delay
        self.audit_visibility_days = 30
        self.v2 = False
        self.mode = "ok"
        """``ok`` or ``garbage`` (5xx / malformed / truncated answers in turn)."""
        self.document_hook: Callable[[dict[str, Any]], None] | None = None
        """Called on every environment document before it is served (tests make it malformed)."""
        self.counters = Counters()
        self.latency = 0.0
        """Seconds added before every answer (the real server takes ~5-50 ms a request)."""
        self.patches = 0
        self._garbage_turn = 0
        now = datetime.now(UTC)
        fs = sample("13-featurestate-detail")
        self.features = [
            Feature(1, FEATURE, fs["id"], fs["uuid"], True, now, now),
            Feature(2, OTHER_FEATURE, 3, str(uuid.uuid4()), True, now, now),
        ]
        self._next_state_id = 10
        self._env_updated = now
        self.versions: list[dict[str, Any]] = []
        self.audit: list[AuditEntry] = []
        self._next_audit_id = 1
        for feature in self.features:
            self._write_audit(
                f"New Flag / Remote Config created: {feature.name}",
                author=self.user,
                object_type="FEATURE",
                object_id=feature.id,
                change_type="CREATE",
                details=[],
                environment=False,
                delay=0.0,
            )
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()
        self._stalled = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def api_url(self) -> str:
        """The API base the SDK and the admin calls use."""
        return f"{self.url}/api/v1/"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> FlagsmithServer:
        """Listen (again) on the same port; a no-op when already running."""
        with self._lock:
            if self._httpd is not None:
                return self
            self._release.clear()
            self._stalled = False
            httpd = _HTTPServer((HOST, self._port), _Handler, self)
            self._port = int(httpd.server_address[1])
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="flagsmith-test-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Take the API away: refuse new connections and cut the open ones."""
        with self._lock:
            httpd, self._httpd = self._httpd, None
            thread, self._thread = self._thread, None
        self._release.set()
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.cut_connections()
        if thread is not None:
            thread.join(timeout=2)

    def stall(self) -> None:
        """Freeze: connections are accepted and requests read, but nothing answers."""
        self._release.clear()
        self._stalled = True

    def restore(self) -> None:
        """Back to normal: running, answering, feature present, no document hook."""
        self._stalled = False
        self._release.set()
        self.mode = "ok"
        self.document_hook = None
        with self._lock:
            feature = self.features[0]
            if not feature.exists:
                self.restore_feature()
        self.start()

    def __enter__(self) -> FlagsmithServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ "the dashboard"

    @property
    def feature(self) -> Feature:
        return self.features[0]

    def vendor_value(self) -> bool | None:
        with self._lock:
            return self.feature.enabled if self.feature.exists else None

    def set_enabled(self, enabled: bool, *, author: dict[str, Any] | str | None = "user") -> bool:
        """Toggle the feature's environment default as a user at the dashboard would.

        Returns whether anything changed (no audit row otherwise, as on the real server).
        """
        who = self.user if author == "user" else author
        with self._lock:
            feature = self.feature
            if feature.enabled is enabled:
                return False
            old = feature.enabled
            before = drf_time(feature.updated)
            feature.enabled = enabled
            feature.updated = datetime.now(UTC)
            self._env_updated = feature.updated
            self._write_audit(
                f"Flag state updated for feature: {feature.name}",
                author=who if isinstance(who, dict) else None,
                object_type="FEATURE_STATE",
                object_id=feature.state_id,
                change_type="UPDATE",
                details=[
                    {"field": "enabled", "old": old, "new": enabled},
                    {"field": "updated_at", "old": before, "new": drf_time(feature.updated)},
                ],
            )
            return True

    def delete_feature(self) -> None:
        with self._lock:
            feature = self.feature
            feature.exists = False
            self._env_updated = datetime.now(UTC)
            self._write_audit(
                f"Feature deleted: {feature.name}",
                author=self.user,
                object_type="FEATURE",
                object_id=feature.id,
                change_type="DELETE",
                details=[],
                environment=False,
            )

    def restore_feature(self) -> None:
        """Re-create the feature (a new feature id and feature state id, as a re-creation gives)."""
        with self._lock:
            old = self.feature
            now = datetime.now(UTC)
            self._next_state_id += 1
            self.features[0] = Feature(
                old.id + 100, old.name, self._next_state_id, str(uuid.uuid4()), True, now, now
            )
            self._env_updated = now
            self._write_audit(
                f"New Flag / Remote Config created: {old.name}",
                author=self.user,
                object_type="FEATURE",
                object_id=old.id + 100,
                change_type="CREATE",
                details=[],
                environment=False,
            )

    def reset_counters(self) -> None:
        with self._lock:
            self.counters = Counters()

    # ------------------------------------------------------------------ payloads

    def document(self) -> dict[str, Any]:
        """The environment document (sample 20) with the current feature states."""
        doc: dict[str, Any] = sample("20-environment-document")
        with self._lock:
            doc["feature_states"] = [
                {
                    "feature": {"id": f.id, "name": f.name, "type": "STANDARD"},
                    "enabled": f.enabled,
                    "django_id": f.state_id,
                    "feature_segment": None,
                    "featurestate_uuid": f.state_uuid,
                    "feature_state_value": None,
                    "multivariate_feature_state_values": [],
                }
                for f in self.features
                if f.exists
            ]
            doc["updated_at"] = self._env_updated.isoformat()
            hook = self.document_hook
        if hook is not None:
            hook(doc)
        return doc

    def flags(self) -> list[dict[str, Any]]:
        """``GET /flags/`` (sample 22) with the current feature states."""
        template = sample("22-flags-client-key")[0]
        out = []
        with self._lock:
            for f in self.features:
                if not f.exists:
                    continue
                item = copy.deepcopy(template)
                item["id"] = f.state_id
                item["feature"]["id"] = f.id
                item["feature"]["name"] = f.name
                item["enabled"] = f.enabled
                out.append(item)
        return out

    def feature_state(self, feature: Feature) -> dict[str, Any]:
        """The feature-state detail (sample 13) of ``feature``."""
        fs: dict[str, Any] = sample("13-featurestate-detail")
        fs.update(
            {
                "id": feature.state_id,
                "uuid": feature.state_uuid,
                "enabled": feature.enabled,
                "feature": feature.id,
                "created_at": drf_time(feature.created),
                "updated_at": drf_time(feature.updated),
                "environment": self.environment["id"],
            }
        )
        return fs

    def feature_listing(self, feature: Feature) -> dict[str, Any]:
        """A project feature-list item (the shape of sample 05)."""
        item = copy.deepcopy(self._feature_template)
        item.update(
            {
                "id": feature.id,
                "name": feature.name,
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, feature.name)),
            }
        )
        return item

    # ------------------------------------------------------------------ audit

    def _write_audit(
        self,
        log: str,
        *,
        author: dict[str, Any] | None,
        object_type: str,
        object_id: int | None,
        change_type: str,
        details: list[dict[str, Any]],
        environment: bool = True,
        object_uuid: str | None = None,
        delay: float | None = None,
    ) -> None:
        with self._lock:
            audit_id = self._next_audit_id
            self._next_audit_id += 1
            detail = {
                "id": audit_id,
                "created_date": drf_time(datetime.now(UTC)),
                "log": log,
                "author": copy.deepcopy(author),
                "environment": copy.deepcopy(self.environment) if environment else None,
                "project": copy.deepcopy(self.project),
                "related_object_id": object_id,
                "related_object_uuid": object_uuid,
                "related_object_type": object_type,
                "is_system_event": False,
                "change_details": details,
                "change_type": change_type,
            }
            wait = self.audit_delay if delay is None else delay
            self.audit.append(AuditEntry(detail, time.monotonic() + wait))

    def visible_audit(self) -> list[AuditEntry]:
        now = time.monotonic()
        with self._lock:
            if self.audit_visibility_days == 0:
                return []
            return [e for e in self.audit if e.visible_at <= now]

    # ------------------------------------------------------------------ request handling

    def handle(self, req: _Handler) -> None:
        if self._stalled:
            # Hold the request, bounded; then drop the connection without an answer.
            self._release.wait(STALL_LIMIT)
            req.close_connection = True
            return
        if self.latency > 0:
            time.sleep(self.latency)
        parts = urlsplit(req.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if self.mode == "garbage" and path.startswith("/api/"):
            self._garbage(req)
            return
        if path in ("/health/liveness/", "/health/readiness/"):
            req.send_json(200, {"status": "ok"})
            return
        if not path.startswith("/api/v1/"):
            req.send_json(404, {"detail": "Not found."})
            return
        segments = [s for s in path[len("/api/v1/") :].split("/") if s]
        method = req.command
        if segments == ["environment-document"] and method == "GET":
            self.counters.hit("environment-document")
            if req.headers.get("X-Environment-Key") != self.server_key:
                req.send_json(403, sample("21-environment-document-with-client-key"))
                return
            req.send_json(
                200,
                self.document(),
                {"X-Flagsmith-Document-Updated-At": f"{self._env_updated.timestamp():.6f}"},
            )
            return
        if segments == ["flags"] and method == "GET":
            self.counters.hit("flags")
            if req.headers.get("X-Environment-Key") not in (self.server_key, self.client_key):
                req.send_json(403, {"detail": "Invalid or missing Environment key"})
                return
            req.send_json(200, self.flags())
            return
        author = self._authenticate(req)
        if author is _DENIED:
            return
        self.counters.hit("admin")
        self._route_admin(req, method, segments, query, author)

    def _authenticate(self, req: _Handler) -> Any:
        header = req.headers.get("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        if scheme == "Token" and secrets.compare_digest(credential, self.user_token):
            return self.user
        if scheme == "Api-Key" and secrets.compare_digest(credential, self.master_key):
            return None  # Flagsmith does not serialise the key behind a change
        if not header:
            req.send_json(401, {"detail": "Authentication credentials were not provided."})
        elif scheme == "Api-Key":
            req.send_json(401, {"detail": "Valid Master API Key not found."})
        else:
            req.send_json(401, {"detail": "Invalid token."})
        return _DENIED

    def _route_admin(
        self,
        req: _Handler,
        method: str,
        seg: list[str],
        query: dict[str, str],
        author: dict[str, Any] | None,
    ) -> None:
        project_id = str(self.project["id"])
        if seg[:2] == ["projects", project_id]:
            rest = seg[2:]
            if rest == [] and method == "GET":
                req.send_json(200, self.project)
                return
            if rest == ["features"] and method == "GET":
                search = query.get("search", "").lower()
                with self._lock:
                    items = [
                        self.feature_listing(f)
                        for f in self.features
                        if f.exists and search in f.name.lower()
                    ]
                req.send_json(200, self._paginate(req, items, query))
                return
            if rest == ["audit"] and method == "GET":
                search = query.get("search", "").lower()
                entries = [
                    e.listed()
                    for e in sorted(self.visible_audit(), key=lambda e: e.id, reverse=True)
                    if search in e.detail["log"].lower()
                ]
                req.send_json(200, self._paginate(req, entries, query, default_size=999))
                return
            if len(rest) == 2 and rest[0] == "audit" and method == "GET":
                found = [e for e in self.visible_audit() if str(e.id) == rest[1]]
                if not found:
                    req.send_json(404, sample("32-project-audit-detail-featurestate"))
                    return
                req.send_json(200, found[0].detail)
                return
            req.send_json(404, {"detail": "Not found."})
            return
        if seg[:1] == ["organisations"] and seg[2:] == ["get-subscription-metadata"]:
            if seg[1] != str(self.project["organisation"]):
                req.send_json(404, {"detail": "Not found."})
                return
            meta = sample("42-organisation-subscription-metadata")
            meta["audit_log_visibility_days"] = self.audit_visibility_days
            req.send_json(200, meta)
            return
        if seg[:1] == ["environments"] and len(seg) >= 2:
            self._route_environment(req, method, seg, query, author)
            return
        req.send_json(404, {"detail": "Not found."})

    def _route_environment(
        self,
        req: _Handler,
        method: str,
        seg: list[str],
        query: dict[str, str],
        author: dict[str, Any] | None,
    ) -> None:
        env_id = str(self.environment["id"])
        if seg[1] == env_id and len(seg) == 5 and seg[2] == "features" and seg[4] == "versions":
            self._versions(req, method, seg[3], author)
            return
        if seg[1] != self.client_key:
            req.send_json(404, {"detail": "Not found."})
            return
        rest = seg[2:]
        if rest == [] and method == "GET":
            env = dict(self.environment)
            env["use_v2_feature_versioning"] = self.v2
            req.send_json(200, env)
            return
        if rest == ["featurestates"] and method == "GET":
            wanted = query.get("feature")
            with self._lock:
                items = []
                for f in self.features:
                    if f.exists and (wanted is None or wanted == str(f.id)):
                        item = self.feature_state(f)
                        item["identity"] = None  # the list puts identity earlier; same fields
                        items.append(item)
            req.send_json(200, self._paginate(req, items, query))
            return
        if len(rest) == 2 and rest[0] == "featurestates":
            self._feature_state(req, method, rest[1], author)
            return
        req.send_json(404, {"detail": "Not found."})

    def _feature_state(
        self, req: _Handler, method: str, state_id: str, author: dict[str, Any] | None
    ) -> None:
        with self._lock:
            matches = [f for f in self.features if f.exists and str(f.state_id) == state_id]
        if not matches:
            req.send_json(404, {"detail": "No FeatureState matches the given query."})
            return
        feature = matches[0]
        if method == "GET":
            req.send_json(200, self.feature_state(feature))
            return
        if method in ("PATCH", "PUT"):
            body = req.json_body()
            if self.v2:
                req.send_json(400, sample("55-v1-patch-on-v2-environment"))
                return
            enabled = body.get("enabled") if isinstance(body, dict) else None
            if type(enabled) is not bool:
                req.send_json(400, {"enabled": ["Must be a valid boolean."]})
                return
            self.patches += 1
            if feature is self.feature:
                self.set_enabled(enabled, author=author)
            else:
                feature.enabled = enabled
            answer = sample("10-featurestate-patch-on" if enabled else "10-featurestate-patch-off")
            answer["feature"] = feature.id
            req.send_json(200, answer)
            return
        req.send_json(405, {"detail": f'Method "{method}" not allowed.'})

    def _versions(
        self, req: _Handler, method: str, feature_id: str, author: dict[str, Any] | None
    ) -> None:
        feature = self.feature
        if not feature.exists or str(feature.id) != feature_id:
            req.send_json(404, {"detail": "Not found."})
            return
        if method == "GET":
            req.send_json(
                200,
                {
                    "count": len(self.versions),
                    "next": None,
                    "previous": None,
                    "results": list(reversed(self.versions)),
                },
            )
            return
        if method != "POST":
            req.send_json(405, {"detail": f'Method "{method}" not allowed.'})
            return
        if not self.v2:
            req.send_json(400, {"detail": "Environment is not using feature versioning v2."})
            return
        body = req.json_body()
        updates = body.get("feature_states_to_update") if isinstance(body, dict) else None
        if not isinstance(updates, list) or not updates or not isinstance(updates[0], dict):
            req.send_json(400, {"feature_states_to_update": ["This field is required."]})
            return
        enabled = updates[0].get("enabled")
        if type(enabled) is not bool:
            req.send_json(400, {"enabled": ["Must be a valid boolean."]})
            return
        version = sample("51-v2-version-create-publish-on")
        now = drf_time(datetime.now(UTC))
        version.update(
            {
                "uuid": str(uuid.uuid4()),
                "created_at": now,
                "updated_at": now,
                "live_from": now,
                "published_by": author["id"] if author else None,
                "created_by": author["id"] if author else None,
            }
        )
        with self._lock:
            self.versions.append(version)
            self._next_state_id += 1
            feature.state_id = self._next_state_id  # each version has its own feature states
            old = feature.enabled
            feature.enabled = enabled
            feature.updated = datetime.now(UTC)
            self._env_updated = feature.updated
            # v2 environments log EF_VERSION rows, not FEATURE_STATE rows.
            self._write_audit(
                f"New version published for feature: {feature.name}",
                author=author,
                object_type="EF_VERSION",
                object_id=None,
                object_uuid=version["uuid"],
                change_type="UPDATE" if old is not enabled else "UNKNOWN",
                details=[],
            )
        req.send_json(201, version)

    def _paginate(
        self,
        req: _Handler,
        items: list[Any],
        query: dict[str, str],
        default_size: int = 10,
    ) -> dict[str, Any]:
        try:
            page = max(1, int(query.get("page", "1")))
            size = max(1, min(999, int(query.get("page_size", str(default_size)))))
        except ValueError:
            page, size = 1, default_size
        chunk = items[(page - 1) * size : page * size]
        base = (
            f"http://{req.headers.get('Host') or f'{HOST}:{self._port}'}{urlsplit(req.path).path}"
        )

        def link(number: int) -> str:
            params = {**query, "page": str(number)}
            return f"{base}?{urlencode(sorted(params.items()))}"

        return {
            "count": len(items),
            "next": link(page + 1) if page * size < len(items) else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": chunk,
        }

    def _garbage(self, req: _Handler) -> None:
        self._garbage_turn += 1
        turn = self._garbage_turn % 4
        if turn == 0:
            req.send_raw(500, GARBAGE_500.encode(), "text/html")
        elif turn == 1:
            req.send_raw(
                200, b'{"api_key": "2pGhP9KtwMPjfvtzLNyeQP", "feature_st', "application/json"
            )
        elif turn == 2:
            # Announce more than is sent, then hang up: a truncated body.
            req.send_raw(200, b'{"api_key": "2pGh', "application/json", claimed=4096)
        else:
            req.send_raw(502, b"", "text/plain")


_DENIED = object()


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], owner: FlagsmithServer
    ) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer, which no real server does.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._connections_lock:
            self._connections.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's session uses it
    server: _HTTPServer

    body_bytes = b""

    def _dispatch(self) -> None:
        try:
            # Read any body first, so a keep-alive connection stays in step whatever the route does.
            length = int(self.headers.get("Content-Length") or 0)
            self.body_bytes = self.rfile.read(length) if length > 0 else b""
            self.server.owner.handle(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _dispatch  # noqa: N815 -- http.server's names

    def json_body(self) -> Any:
        try:
            return json.loads(self.body_bytes) if self.body_bytes else None
        except ValueError:
            return None

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(body).encode(), "application/json", headers=headers)

    def send_raw(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        *,
        claimed: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(claimed if claimed is not None else len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if claimed is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- http.server's signature
        return  # quiet: the tests read logs for secrets and noise

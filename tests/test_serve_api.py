"""``breakglass serve``'s API against the real app on uvicorn and the local provider.

Faults tried: no token, a forged, malformed or revoked token, the wrong role,
CSRF from another origin, a replayed request, a reused idempotency key, a
target that cannot be written (NOT HALTED), the store gone, a flood of bad
tokens, and an actor smuggled into the body.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import closing
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from breakglass.local.store import LocalStore
from breakglass.serve.listeners import SuspensionEvent
from breakglass.serve.settings import ServeSettings
from breakglass.testing.serve import (
    FLAG,
    Running,
    halt_once_answered,
    local_settings,
    running_serve,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.live

PROBLEM = "application/problem+json"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Running]:
    with running_serve(tmp_path) as running:
        assert running.wait_active(True), "the local flag never read active"
        yield running


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def _audit(running: Running, event_type: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The audit records of ``event_type``, once the recorder has written at least one."""
    deadline = time.monotonic() + timeout
    with running.client("viewer") as c:
        while True:
            records = c.get("/v1/audit", params={"limit": 1000}).json()["records"]
            found = [r for r in records if r["vendor_event_type"] == event_type]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


# ------------------------------------------------------------------ authentication


def test_no_token_is_401_with_problem_details(serve: Running) -> None:
    with serve.client() as c:
        for method, path in (("GET", "/v1/status"), ("POST", "/v1/halt"), ("GET", "/v1/events")):
            response = c.request(method, path, json={"reason": "x"} if method == "POST" else None)
            _problem(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert serve.server.bridge.engine.active  # nothing happened
    assert _audit(serve, "auth-denied")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer bgt_000000000000_forged",
        "Bearer bgt_",
        "Bearer not-a-token",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer",
        "Bearer a.b.c",
    ],
)
def test_forged_and_malformed_tokens_are_401(serve: Running, header: str) -> None:
    with serve.client(headers={"Authorization": header}) as c:
        _problem(c.post("/v1/halt", json={"reason": "x"}), 401, "unauthenticated")
    assert serve.server.bridge.engine.active


def test_a_real_token_id_with_a_wrong_secret_is_401(serve: Running) -> None:
    real = serve.tokens["admin"]
    forged = real[: real.rindex("_") + 1] + "A" * 43
    with serve.client(headers={"Authorization": f"Bearer {forged}"}) as c:
        _problem(c.get("/v1/status"), 401, "unauthenticated")


def test_revoked_token_is_refused_within_the_refresh(serve: Running) -> None:
    with serve.client("halter") as c:
        assert c.get("/v1/status").status_code == 200
        assert serve.server.services.tokens.revoke("halter-1", by="test")
        time.sleep(0.3)  # token_refresh is 0.2 s in these tests
        _problem(c.get("/v1/status"), 401, "unauthenticated")


def test_viewer_cannot_halt_and_the_denial_is_audited(serve: Running) -> None:
    with serve.client("viewer") as c:
        body = _problem(c.post("/v1/halt", json={"reason": "curious"}), 403, "forbidden")
    assert "halter" in body["detail"]
    assert serve.server.bridge.engine.active
    denied = _audit(serve, "auth-denied")
    assert any(r["actor"]["name"] == "viewer-1" and r["raw"]["status"] == 403 for r in denied)


def _roles_by_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The policy names who approves (admin) and who ticks root-cause (approver): those are checked."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[resume]\napprover_role = "admin"\n\n[[resume.checklist]]\nid = "root-cause"\n'
        'text = "Root cause identified"\nrole = "approver"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(policy))


# Each route that changes something, with a role that may not do it.
_NOT_ALLOWED = [
    ("viewer", "POST", "/v1/halt"),
    ("halter", "POST", "/v1/resume"),
    ("approver", "POST", "/v1/resume/approvals"),
    ("halter", "POST", "/v1/resume/checklist/root-cause"),
    ("viewer", "POST", "/v1/resume/conditions/staging-probe"),
    ("viewer", "POST", "/v1/suspensions"),
    ("halter", "POST", "/v1/held/release"),
    ("halter", "POST", "/v1/held/discard"),
    ("viewer", "POST", "/v1/drill/progress"),
    ("approver", "POST", "/v1/drills/d-1/remediation"),
    ("approver", "POST", "/v1/tokens"),
    ("approver", "DELETE", "/v1/tokens/viewer-1"),
    ("approver", "POST", "/v1/sessions/revocations"),
    ("approver", "GET", "/v1/sessions/revocations"),
]


def test_who_may_not_act_is_refused_before_the_body_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """403 (401 without credentials) whatever the body: a 422 would teach the body to anyone."""
    bodies = ['{"reason": "cut off', '{"unexpected": 1}', '"text"', ""]
    json_type = {"Content-Type": "application/json"}
    _roles_by_policy(tmp_path, monkeypatch)
    # Enough failed credentials before the limit that every route and body is tried.
    settings = ServeSettings(path=tmp_path / "serve.db", token_refresh=0.2, login_failures=1000)
    with running_serve(tmp_path, serve=settings) as serve, serve.client() as anonymous:
        for role, method, path in _NOT_ALLOWED:
            with serve.client(role) as c:
                for body in bodies:
                    refused = c.request(method, path, content=body, headers=json_type)
                    detail = _problem(refused, 403, "forbidden")["detail"]
                    assert f"is {role}" in detail, (method, path, body)
        # Acknowledging a notification needs a person, of any role.
        for _, method, path in [*_NOT_ALLOWED, ("", "POST", "/v1/notifications/s/ack")]:
            for body in bodies:
                unknown = anonymous.request(method, path, content=body, headers=json_type)
                _problem(unknown, 401, "unauthenticated")
        assert serve.server.bridge.engine.active


# Each console form, a role that may not send it, and a form that is wrong besides (empty, an
# unknown action, no open suspension to approve or tick).
_FORMS_NOT_ALLOWED = [
    ("viewer", "/console/halt", {"reason": ""}, "Give a reason for the halt."),
    ("halter", "/console/resume", {"reason": ""}, "Give a reason for the resume."),
    ("halter", "/console/held", {"action": "neither"}, "Choose release or discard."),
    ("approver", "/console/drill/remediate", {"drill_id": "", "action": ""}, "Say what was done."),
    ("approver", "/console/resume/approve", {}, "no open suspension"),
    ("halter", "/console/resume/check", {"item": "root-cause"}, "no open suspension"),
]


def test_who_may_not_send_a_console_form_is_refused_before_the_form_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """403 naming the role, never the form's own complaint: as on the API."""
    _roles_by_policy(tmp_path, monkeypatch)
    with running_serve(tmp_path) as serve:
        for role, path, form, complaint in _FORMS_NOT_ALLOWED:
            c, csrf = serve.console(role)
            with closing(c):
                refused = c.post(path, data={"csrf": csrf, **form}, headers={"Origin": serve.url})
            detail = _problem(refused, 403, "forbidden")["detail"]
            assert f"is {role}" in detail, (path, detail)
            assert complaint not in refused.text, path
        assert serve.server.bridge.engine.active


def _report(active: bool) -> dict[str, Any]:
    return {
        "host": "host-a",
        "pid": 4242,
        "instance": "abcd1234",
        "service": "inference",
        "role": "worker",
        "provider": "relay",
        "flag": "system-active",
        "active": active,
        "cause": "active" if active else "off",
        "confirmed_at": None,
        "flipped_at": None,
        "sent_at": "2026-01-01T00:00:00.000Z",
        "seq": 1,
        "interval": 5.0,
    }


@pytest.mark.parametrize("role", ["viewer", "halter", "approver", "admin"])
def test_no_persons_token_can_vouch_for_a_reader(serve: Running, role: str) -> None:
    """A viewer's token is handed out widely: it must not make a reader look halted."""
    with serve.client(role) as c:
        body = _problem(c.post("/v1/reports", json=_report(active=False)), 403, "forbidden")
        assert "reporter" in body["detail"]
        assert c.get("/v1/fleet").json()["reader_list"] == []


def test_a_reporter_token_reports_and_reads_the_flag_and_nothing_else(serve: Running) -> None:
    with serve.client("reporter") as c:
        assert c.post("/v1/reports", json=_report(active=True)).status_code == 202
        ofrep = c.post("/ofrep/v1/evaluate/flags/system-active", json={"context": {}})
        assert ofrep.status_code == 200, ofrep.text
        assert ofrep.json()["value"] is True
        for method, path in (
            ("GET", "/v1/status"),
            ("GET", "/v1/fleet"),
            ("GET", "/v1/audit"),
            ("POST", "/v1/halt"),
            ("GET", "/v1/tokens"),
        ):
            body = _problem(c.request(method, path, json={"reason": "x"}), 403, "forbidden")
            assert "reporter" in body["detail"]
        c.get("/login")
        csrf = c.cookies.get("breakglass_login")
        assert csrf, "the login form sets its nonce cookie"
        refused = c.post(
            "/login",
            data={"token": serve.tokens["reporter"], "csrf": csrf},
            headers={"Origin": serve.url},
            follow_redirects=False,
        )
        assert refused.status_code == 403, refused.text
        assert "reporter token is a service" in refused.text
        assert serve.server.services.sessions.cookie not in refused.cookies
    with serve.client("viewer") as c:
        readers = c.get("/v1/fleet").json()["reader_list"]
    assert [(r["host"], r["pid"], r["active"]) for r in readers] == [("host-a", 4242, True)]
    assert serve.server.bridge.engine.active


def test_halter_cannot_resume(serve: Running) -> None:
    with serve.client("halter") as c:
        assert c.post("/v1/halt", json={"reason": "incident"}).status_code == 200
        _problem(c.post("/v1/resume", json={"reason": "fixed"}), 403, "forbidden")
    assert serve.wait_active(False)


def test_failed_logins_are_rate_limited_but_a_valid_token_still_halts(tmp_path: Path) -> None:
    serve_settings = ServeSettings(path=tmp_path / "serve.db", login_failures=5, login_window=60)
    with running_serve(tmp_path, serve=serve_settings) as serve:
        with serve.client(headers={"Authorization": "Bearer bgt_x_y"}) as bad:
            codes = [bad.get("/v1/status").status_code for _ in range(8)]
        assert codes[:5] == [401] * 5
        assert codes[5:] == [429] * 3
        with serve.client() as c:
            again = c.get("/v1/status", headers={"Authorization": "Bearer bgt_x_y"})
            _problem(again, 429, "too-many-failures")
            assert int(again.headers["retry-after"]) >= 1
        with serve.client("halter") as c:
            assert c.post("/v1/halt", json={"reason": "still works"}).status_code == 200


# ------------------------------------------------------------------ halting


def test_halt_answers_once_acknowledged_and_records_the_identity(serve: Running) -> None:
    with serve.client("halter") as c:
        response = c.post(
            "/v1/halt",
            json={
                "reason": "model emits unsafe output",
                "incident": "INC-7",
                "personal_data_affected": True,
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["outcome"] == "halted"
        assert body["actor"]["name"] == "halter-1"
        assert [t["target"] for t in body["targets"] if t["ok"]] == ["local"]
        assert serve.wait_active(False, 2.0)
        assert LocalStore(serve.server.bridge.settings.local_file).read(FLAG) is False
        status = c.get("/v1/status").json()
    assert status["active"] is False
    assert status["cause"] == "off"
    suspension = status["suspension"]
    assert suspension["opened_by"] == "token:halter-1"
    assert suspension["reason"] == "model emits unsafe output"
    assert suspension["incident"] == "INC-7"
    assert suspension["personal_data_affected"] is True
    assert status["targets"][0]["last"]["ok"] is True
    # The flag change's own audit record names the authenticated actor, not a body field.
    changes = _audit(serve, "halt")
    assert changes
    assert changes[-1]["actor"]["id"] == "token:halter-1"
    requests = _audit(serve, "halt-request")
    assert requests[-1]["actor"] == {
        "kind": "api_token",
        "id": body["actor"]["subject"],
        "email": None,
        "name": "halter-1",
    }


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "ok\x1b[2J"}, "reason"),
        ({"reason": "x" * 2001}, "reason"),
        ({"reason": "ok", "actor": "someone-else"}, "actor"),
        ({"reason": "ok", "incident": "a\x00b"}, "incident"),
    ],
)
def test_invalid_halt_bodies_are_422_and_change_nothing(
    serve: Running, payload: dict[str, Any], field: str
) -> None:
    with serve.client("halter") as c:
        body = _problem(c.post("/v1/halt", json=payload), 422, "invalid-request")
    assert any(field in e["loc"] for e in body["errors"])
    assert serve.server.bridge.engine.active


def test_idempotent_replay_halts_once(serve: Running) -> None:
    store = LocalStore(serve.server.bridge.settings.local_file)
    before = len(store.changes(FLAG).changes)
    with serve.client("halter") as c:
        first = c.post("/v1/halt", json={"reason": "r"}, headers={"Idempotency-Key": "pager-123"})
        again = halt_once_answered(c, {"reason": "r"}, "pager-123")
        other = c.post(
            "/v1/halt", json={"reason": "other"}, headers={"Idempotency-Key": "pager-123"}
        )
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    _problem(other, 422, "idempotency-key-reused")
    assert len(store.changes(FLAG).changes) == before + 1


def test_a_halt_no_target_acknowledged_is_not_halted_with_the_fallback(tmp_path: Path) -> None:
    with running_serve(tmp_path) as serve:
        assert serve.wait_active(True)
        local = serve.server.bridge.settings.local_file
        local.unlink()
        local.mkdir()  # the flag store is now a directory: every write fails
        with serve.client("halter") as c:
            body = _problem(
                c.post("/v1/halt", json={"reason": "r"}, headers={"Idempotency-Key": "k"}),
                503,
                "not-halted",
            )
            assert "NOT HALTED" in body["detail"]
            assert "kill switch" in body["fallback"]
            assert body["targets"][0]["ok"] is False
            assert body["targets"][0]["error"]
            # The key was released: a retry halts for real once the target works again.
            local.rmdir()
            LocalStore(local).write(FLAG, True, actor="setup", reason="repaired")
            retry = halt_once_answered(c, {"reason": "r"}, "k")
            assert retry.status_code == 200, retry.text
            assert "idempotent-replayed" not in retry.headers


def test_the_store_gone_does_not_stop_a_halt(tmp_path: Path) -> None:
    with running_serve(tmp_path) as serve:
        assert serve.wait_active(True)
        db = tmp_path / "serve.db"
        db.unlink()
        db.mkdir()  # serve.db cannot be opened any more
        with serve.client("halter") as c:
            _problem(c.get("/readyz"), 503, "store-unavailable")
            response = c.post(
                "/v1/halt", json={"reason": "store down"}, headers={"Idempotency-Key": "x1"}
            )
            assert response.status_code == 200, response.text
            problems = " ".join(response.json()["problems"])
            assert "idempotency key not checked" in problems
            assert "suspension record" in problems
            assert serve.wait_active(False, 2.0)
            status = c.get("/v1/status").json()
            assert status["active"] is False
            assert "store_problem" in status
        shutil.rmtree(db)
        with serve.client("viewer") as c:
            assert c.get("/readyz").status_code == 200


# ------------------------------------------------------------------ resuming


def test_approver_resumes_and_the_suspension_closes(serve: Running) -> None:
    with serve.client("halter") as c:
        assert c.post("/v1/halt", json={"reason": "drill"}).status_code == 200
    assert serve.wait_active(False)
    with serve.client("approver") as c:
        response = c.post("/v1/resume", json={"reason": "checked and safe"})
        assert response.status_code == 200, response.text
        assert response.json()["outcome"] == "resumed"
        assert serve.wait_active(True, 3.0)
        history = c.get("/v1/suspensions").json()["suspensions"]
    assert history[0]["closed_by"] == "token:approver-1"
    assert history[0]["close_reason"] == "checked and safe"
    assert history[0]["open"] is False


# ------------------------------------------------------------------ events, listeners, telemetry


def _collect_events(
    url: str, token: str, into: list[tuple[str, dict[str, Any]]], stop: threading.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", f"{url}/v1/events", headers=headers, timeout=30.0) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                into.append((kind, json.loads(line[6:])))
    into.append(("end", {}))  # serve ended the stream (it is shutting down)


def test_events_stream_the_halt_and_each_target(serve: Running) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    stop = threading.Event()
    reader = threading.Thread(
        target=_collect_events, args=(serve.url, serve.tokens["viewer"], seen, stop), daemon=True
    )
    reader.start()
    # Generous waits: each ends as soon as what it waits for has arrived.
    deadline = time.monotonic() + 30
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen, "no snapshot within 30 s"
    assert seen[0][0] == "snapshot"
    assert seen[0][1]["active"] is True
    assert seen[0][1]["fleet"]["another_source"] == 0  # what /v1/status says of the readers
    with serve.client("halter") as c:
        assert c.post("/v1/halt", json={"reason": "watch this"}).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kinds = [k for k, _ in seen]
        if {"state", "target", "halt", "halt-complete"} <= set(kinds):
            break
        time.sleep(0.02)
    stop.set()
    serve.server.services.control.hub.close()  # serve ends every stream when it stops
    reader.join(5)
    assert not reader.is_alive()
    assert seen[-1][0] == "end"
    kinds = [k for k, _ in seen]
    assert {"halt-requested", "target", "halt", "halt-complete", "state"} <= set(kinds), kinds
    state = next(d for k, d in seen if k == "state" and d["active"] is False)
    assert state["cause"] == "off"
    target = next(d for k, d in seen if k == "target")
    assert target["target"] == "local"
    assert target["ok"] is True


class Recording:
    def __init__(self) -> None:
        self.events: list[SuspensionEvent] = []
        self.answered: list[bool] = []

    def on_event(self, event: SuspensionEvent) -> None:
        self.events.append(event)


def test_listeners_hear_of_the_halt_after_the_answer(tmp_path: Path) -> None:
    listener = Recording()
    with running_serve(tmp_path, listeners=[listener]) as serve:
        assert serve.wait_active(True)
        with serve.client("halter") as c:
            response = c.post("/v1/halt", json={"reason": "notify", "business_continuity": True})
        assert response.status_code == 200
        deadline = time.monotonic() + 30
        while len(listener.events) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    kinds = [e.kind for e in listener.events]
    assert kinds == ["halt", "halt-complete"]
    event = listener.events[0]
    assert event.actor["name"] == "halter-1"
    assert event.business_continuity is True
    assert event.suspension_id == response.json()["suspension_id"]


def test_metrics_health_and_openapi(serve: Running) -> None:
    with serve.client("halter") as c:
        c.post("/v1/halt", json={"reason": "count me"})
        assert c.get("/healthz").json() == {"ok": True}
        assert c.get("/readyz").status_code == 200
        text = c.get("/metrics").text
        spec = c.get("/openapi.json").json()
        doc = c.get("/problems/not-halted")
    assert 'breakglass_halts_total{outcome="halted"} 1.0' in text
    assert (
        'breakglass_target_results_total{change="halt",outcome="acknowledged",target="local"} 1.0'
        in text
    )
    assert "breakglass_active 0.0" in text
    assert {"/v1/halt", "/v1/resume", "/v1/status", "/v1/events", "/v1/audit"} <= set(spec["paths"])
    assert "actor" not in spec["components"]["schemas"]["HaltRequest"]["properties"]
    assert doc.status_code == 200
    assert "kill switch" in doc.text


def test_security_headers(serve: Running) -> None:
    with serve.client("viewer") as c:
        response = c.get("/v1/status")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


# ------------------------------------------------------------------ console sessions and CSRF


def test_session_halts_need_the_csrf_token_and_the_same_origin(serve: Running) -> None:
    c, csrf = serve.console("halter")
    with closing(c):
        # The session cookie is out of scripts' reach and never sent from another site.
        (cookie,) = (k for k in c.cookies.jar if k.name == serve.server.services.sessions.cookie)
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert cookie.get_nonstandard_attr("SameSite") == "strict"
        _problem(c.post("/v1/halt", json={"reason": "no csrf"}), 403, "forbidden")
        evil = c.post(
            "/v1/halt",
            json={"reason": "cross-site"},
            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
        )
        _problem(evil, 403, "forbidden")
        assert serve.server.bridge.engine.active
        ok = c.post(
            "/v1/halt",
            json={"reason": "from the console"},
            headers={"X-CSRF-Token": csrf, "Origin": serve.url},
        )
        assert ok.status_code == 200, ok.text
    assert serve.wait_active(False)
    denied = _audit(serve, "auth-denied")
    assert any("another origin" in r["comment"] for r in denied)


def test_login_with_a_bad_token_or_a_forged_cookie_fails(serve: Running) -> None:
    with httpx.Client(base_url=serve.url, timeout=30.0) as c:
        form = c.get("/login")
        nonce = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        bad = c.post("/login", data={"token": "bgt_nope_nope", "csrf": nonce})
        assert bad.status_code == 401
        assert "unknown, revoked or wrong" in bad.text
        no_nonce = httpx.post(
            f"{serve.url}/login", data={"token": serve.tokens["admin"], "csrf": "x"}
        )
        assert no_nonce.status_code == 403
        c.cookies.set("breakglass_session", "eyJmb3JnZWQiOnRydWV9.forged.sig")
        _problem(c.get("/v1/status"), 401, "unauthenticated")
        assert c.get("/", follow_redirects=False).status_code == 303


def test_a_revoked_token_ends_its_console_session(serve: Running) -> None:
    c, _ = serve.console("viewer")
    with closing(c):
        assert c.get("/v1/status").status_code == 200
        serve.server.services.tokens.revoke("viewer-1", by="test")
        time.sleep(0.3)
        _problem(c.get("/v1/status"), 401, "unauthenticated")


def test_local_settings_fixture_is_fresh_per_test(tmp_path: Path) -> None:
    # Guards the harness itself: every test starts active on its own store.
    settings = local_settings(tmp_path)
    assert LocalStore(settings.local_file).read(FLAG) is True


def test_a_flood_of_halts_is_answered_and_lands_in_one_suspension(serve: Running) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def halt(i: int) -> int:
        with serve.client("halter") as c:
            return c.post("/v1/halt", json={"reason": f"flood {i}"}).status_code

    with ThreadPoolExecutor(30) as pool:
        codes = list(pool.map(halt, range(200)))
    assert codes == [200] * 200
    assert serve.wait_active(False)
    # Writes that met a busy store are retried in the background: none is lost.
    deadline = time.monotonic() + 60
    with serve.client("viewer") as c:
        while True:
            suspensions = c.get("/v1/suspensions").json()["suspensions"]
            if len(suspensions[0]["halts"]) >= 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        metrics = c.get("/metrics").text
    assert len(suspensions) == 1
    assert len(suspensions[0]["halts"]) == 200
    assert 'breakglass_halts_total{outcome="halted"} 200.0' in metrics


def test_slowloris_clients_do_not_block_a_halt(serve: Running) -> None:
    import socket

    port = int(serve.url.rsplit(":", 1)[1])
    slow = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(
                b"POST /v1/halt HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            )  # never ends
            slow.append(s)
        started = time.monotonic()
        with serve.client("halter") as c:
            response = c.post("/v1/halt", json={"reason": "under a slowloris"})
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 10
        assert serve.wait_active(False)
    finally:
        for s in slow:
            s.close()


def test_idempotency_keys_are_forgotten_after_a_day(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from breakglass.serve.store import SqliteServeStore

    store = SqliteServeStore(tmp_path / "serve.db")
    now = datetime.now(UTC)
    assert store.claim_key("alice", "k", "body-1", now - timedelta(hours=26)).fresh
    store.complete_key("alice", "k", 200, "{}")
    again = store.claim_key("alice", "k", "body-2", now - timedelta(hours=1))
    assert again.fresh, "a day-old key replays nothing"
    store.complete_key("alice", "k", 200, "{}")
    replay = store.claim_key("alice", "k", "body-2", now)
    assert not replay.fresh
    assert replay.status == 200
    assert store.claim_key("bob", "k", "body-2", now).fresh, "keys are per caller"


def test_a_hanging_store_does_not_queue_halts(serve: Running, tmp_path: Path) -> None:
    """serve.db locked by another process: 48 halts with idempotency keys at once all answer quickly.

    Before halts had threads of their own, the store calls filled the shared pool and the halts
    waited behind them: 30 halts took 8.4 s here, and the wait grows with their number. The same
    48 halts with the store free, just before, are the yardstick: a loaded machine slows both.
    """
    import sqlite3
    from concurrent.futures import ThreadPoolExecutor

    def halt(key: str) -> int:
        with serve.client("halter") as c:
            response = c.post("/v1/halt", json={"reason": key}, headers={"Idempotency-Key": key})
        return response.status_code

    def halts(tag: str) -> float:
        begun = time.monotonic()
        with ThreadPoolExecutor(48) as pool:
            codes = list(pool.map(halt, [f"{tag}-{i}" for i in range(48)]))
        assert codes == [200] * 48, tag
        return time.monotonic() - begun

    free = halts("free")
    assert serve.wait_active(False)
    locker = sqlite3.connect(tmp_path / "serve.db", isolation_level=None)
    locker.execute(
        "BEGIN EXCLUSIVE"
    )  # every write (and read) of the store now waits its busy timeout
    try:
        took = halts("locked")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    # Each halt gives up on the key after 1 s and on the store's busy timeout (2 s) at most once;
    # queued behind each other they wait a multiple of that.
    assert took < free + 6, f"48 halts took {took:.1f} s with the store hanging, {free:.1f} s free"


def test_admins_manage_tokens_over_the_api(serve: Running) -> None:
    with serve.client("approver") as c:
        _problem(c.get("/v1/tokens"), 403, "forbidden")
        _problem(c.post("/v1/tokens", json={"name": "x", "role": "admin"}), 403, "forbidden")
    with serve.client("admin") as admin:
        made = admin.post("/v1/tokens", json={"name": "pager bot", "role": "halter"})
        assert made.status_code == 201, made.text
        text = made.json()["token"]
        again = admin.post("/v1/tokens", json={"name": "pager bot", "role": "viewer"})
        _problem(again, 409, "invalid-request")
        _problem(
            admin.post("/v1/tokens", json={"name": "y", "role": "root"}), 422, "invalid-request"
        )
        listed = admin.get("/v1/tokens").json()["tokens"]
        assert "pager bot" in [t["name"] for t in listed]
        assert text.split("_", 2)[2] not in json.dumps(listed)
        with serve.client(headers={"Authorization": f"Bearer {text}"}) as bot:
            assert bot.post("/v1/halt", json={"reason": "paged"}).status_code == 200
            assert admin.delete("/v1/tokens/pager%20bot").status_code == 204
            _problem(admin.delete("/v1/tokens/pager%20bot"), 404, "not-found")
            _problem(bot.get("/v1/status"), 401, "unauthenticated")
    created = _audit(serve, "token-created")
    assert created[-1]["actor"]["name"] == "admin-1"

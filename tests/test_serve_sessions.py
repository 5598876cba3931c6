"""Console sessions against the real serve: lifetime, idle timeout, renewal, revocation by an admin.

Attacks tried: a cookie tampered with, signed with another key or in the old
format; a cookie replayed after its person's sessions were ended; cookies
dated by a replica whose clock is ahead or behind; a session left idle; a
revocation dodged by logging in on a replica that has not re-read the list.
Two replicas: ``tests/test_serve_replicas.py``.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

from breakglass.serve.sessions import Sessions
from breakglass.serve.settings import ServeSettings
from breakglass.testing import ManualClock
from breakglass.testing.serve import Running, running_serve
from tests.test_serve_oidc import IdentityProvider, sso_serve

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.live

ERIN = {"sub": "user-7", "email": "Erin@Example.com", "groups": ["governance"]}


@pytest.fixture
def serve(tmp_path: Path, idp: IdentityProvider) -> Iterator[Running]:
    with sso_serve(tmp_path, idp, token_refresh=0.2) as running:
        yield running


def _sso(serve: Running, idp: IdentityProvider, user: dict[str, Any]) -> tuple[httpx.Client, str]:
    """A browser logged in through single sign-on as ``user``, and its CSRF token."""
    idp.user = user
    c = httpx.Client(base_url=serve.url, timeout=30.0)
    landed = c.get("/login/oidc", follow_redirects=True)
    assert landed.status_code == 200, landed.text
    csrf = landed.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return c, csrf


def _unsafe(csrf: str, serve: Running) -> dict[str, str]:
    return {"X-CSRF-Token": csrf, "Origin": serve.url}


def _cookie(serve: Running, *, made: datetime, used: datetime | None = None) -> str:
    """A session cookie with the real key, as a replica whose clock read ``made`` would make it."""
    services = serve.server.services
    clock = ManualClock(start=made)
    sessions = Sessions(
        services.sessions.key, max_age=8 * 3600, idle=1800, secure=False, clock=clock
    )
    identity = services.tokens.verify(serve.tokens["halter"])
    value, session = sessions.make(identity)
    if used is not None:
        clock.jump_wall((used - made).total_seconds())
        renewed = sessions.renewal(session)
        assert renewed is not None
        value = renewed
    return value


def _status(serve: Running, cookie: str) -> httpx.Response:
    with httpx.Client(base_url=serve.url, timeout=30.0) as c:
        c.cookies.set(serve.server.services.sessions.cookie, cookie)
        return c.get("/v1/status")


def _audited(serve: Running, kind: str) -> list[dict[str, Any]]:
    """The audit records of ``kind``, once the recorder has written one (it writes off the path)."""
    deadline = time.monotonic() + 10
    with serve.client("viewer") as viewer:
        while True:
            records = viewer.get("/v1/audit", params={"limit": 1000}).json()["records"]
            found = [r for r in records if r["vendor_event_type"] == kind]
            if found or time.monotonic() > deadline:
                assert found, f"no {kind} record in the audit trail"
                return found
            time.sleep(0.05)


def test_an_admin_ends_a_persons_sessions_and_a_replayed_cookie_is_refused(
    serve: Running, idp: IdentityProvider
) -> None:
    c, csrf = _sso(serve, idp, ERIN)
    other, other_csrf = _sso(serve, idp, {**ERIN, "sub": "user-8", "email": "sam@example.com"})
    with closing(c), closing(other):
        assert c.get("/v1/whoami").json()["role"] == "approver"
        kept = c.cookies[serve.server.services.sessions.cookie]
        with serve.client("halter") as h:
            assert h.post("/v1/halt", json={"reason": "before the revocation"}).status_code == 200
        assert serve.wait_active(False)

        with serve.client("approver") as not_admin:
            refused = not_admin.post(
                "/v1/sessions/revocations", json={"person": "erin@example.com"}
            )
            assert refused.status_code == 403
        with serve.client("admin") as admin:
            done = admin.post(
                "/v1/sessions/revocations",
                json={"person": "erin@example.com", "reason": "role removed at the IdP"},
            )
            assert done.status_code == 200, done.text
            assert done.json()["person"] == "erin@example.com"
            assert done.json()["generation"] == 1
            assert done.json()["revoked_by"] == "token:admin-1"
            listed = admin.get("/v1/sessions/revocations").json()["revocations"]
            assert [r["person"] for r in listed] == ["erin@example.com"]

        # Matched by name whatever its case; every action refused, resume first of all.
        resume = c.post("/v1/resume", json={"reason": "all clear"}, headers=_unsafe(csrf, serve))
        assert resume.status_code == 401
        assert "an admin ended this console session" in resume.json()["detail"]
        assert (
            c.post("/v1/halt", json={"reason": "x"}, headers=_unsafe(csrf, serve)).status_code
            == 401
        )
        assert c.get("/v1/status").status_code == 401
        page = c.get("/", follow_redirects=False)
        assert page.status_code == 303
        form = c.post(
            "/console/resume", data={"csrf": csrf, "reason": "x"}, headers={"Origin": serve.url}
        )
        assert form.status_code in (401, 303)
        assert serve.server.bridge.engine.active is False, "still halted"
        # The cookie copied before the revocation, replayed from elsewhere: refused too.
        assert _status(serve, kept).status_code == 401
        # Someone else's session is untouched.
        assert other.get("/v1/status").status_code == 200
        assert other_csrf

    # Halting stays open to the person through a credential still valid (an API token) ...
    with serve.client("halter") as h:
        assert h.post("/v1/halt", json={"reason": "after the revocation"}).status_code == 200
    # ... and a new login (the IdP still grants the role) starts a session that works.
    again, _ = _sso(serve, idp, ERIN)
    with closing(again):
        assert again.get("/v1/whoami").status_code == 200
    ended = _audited(serve, "sessions-revoked")
    assert ended[-1]["actor"]["name"] == "admin-1"
    assert "role removed" in ended[-1]["comment"]


def test_revocation_by_subject_and_bad_requests(serve: Running, idp: IdentityProvider) -> None:
    c, _ = _sso(serve, idp, ERIN)
    with closing(c):
        subject = c.get("/v1/whoami").json()["subject"]
        assert subject == f"oidc:{idp.issuer}#user-7"
        with serve.client("admin") as admin:
            assert (
                admin.post("/v1/sessions/revocations", json={"person": subject}).status_code == 200
            )
            assert admin.post("/v1/sessions/revocations", json={"person": ""}).status_code == 422
            assert (
                admin.post("/v1/sessions/revocations", json={"person": "a\x00b"}).status_code == 422
            )
            extra = admin.post("/v1/sessions/revocations", json={"person": "x", "actor": "y"})
            assert extra.status_code == 422
        assert c.get("/v1/status").status_code == 401


def test_forged_tampered_and_old_format_cookies_are_refused(serve: Running) -> None:
    services = serve.server.services
    good = _cookie(serve, made=datetime.now(UTC))
    assert _status(serve, good).status_code == 200
    payload = URLSafeSerializer(services.sessions.key, salt="breakglass.console.session/2").loads(
        good
    )
    payload["role"] = "admin"
    other_key = URLSafeSerializer("not the key", salt="breakglass.console.session/2").dumps(payload)
    assert _status(serve, other_key).status_code == 401
    body, _, signature = good.rpartition(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + signature
    assert _status(serve, tampered).status_code == 401
    # A cookie of the format before sessions had an idle time: signed with the real key, refused.
    old = URLSafeTimedSerializer(services.sessions.key, salt="breakglass.console.session").dumps(
        {k: payload[k] for k in ("sub", "name", "role", "kind", "tid", "csrf")}
    )
    assert _status(serve, old).status_code == 401


def test_lifetime_idle_time_and_clock_steps(serve: Running) -> None:
    now = datetime.now(UTC)
    expired = _status(serve, _cookie(serve, made=now - timedelta(hours=9)))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    idle = _status(serve, _cookie(serve, made=now - timedelta(minutes=31)))
    assert idle.status_code == 401
    assert "30 min without activity" in idle.json()["detail"]
    # Made hours ago but used a minute ago: alive.
    used = _cookie(serve, made=now - timedelta(hours=5), used=now - timedelta(minutes=1))
    assert _status(serve, used).status_code == 200
    # A replica whose clock is an hour ahead (or this one stepped back): refused, never stretched.
    ahead = _status(serve, _cookie(serve, made=now + timedelta(hours=1)))
    assert ahead.status_code == 401
    assert "future" in ahead.json()["detail"]
    # Replicas a few seconds apart agree.
    assert _status(serve, _cookie(serve, made=now + timedelta(seconds=20))).status_code == 200
    # A replica whose clock is behind by 10 minutes made it: alive, its idle time counts from then.
    assert _status(serve, _cookie(serve, made=now - timedelta(minutes=10))).status_code == 200


def test_an_open_console_stays_logged_in_and_an_idle_one_ends(tmp_path: Path) -> None:
    # 6 s: a loaded host may stall one request for seconds, which must not read as idleness.
    settings = ServeSettings(path=tmp_path / "serve.db", session_idle_minutes=0.1)
    with running_serve(tmp_path, serve=settings) as serve:
        c, _ = serve.console("viewer")
        with closing(c):
            first = c.cookies[serve.server.services.sessions.cookie]
            tag = _page_tag(c)
            # As the console page does: a request every second, for twice the idle time.
            renewed = 0
            for _ in range(12):
                time.sleep(1)
                answer = c.get("/v1/status")
                assert answer.status_code == 200, answer.text
                # A renewed cookie is the same session: the page must not read it as replaced.
                assert answer.json()["session"] == tag
                renewed += "set-cookie" in answer.headers
            assert renewed >= 3, "each request after the renewal interval re-issues the cookie"
            assert c.cookies[serve.server.services.sessions.cookie] != first
            # The first cookie, unused since the login, has been idle too long.
            assert _status(serve, first).status_code == 401
            time.sleep(6.5)
            gone = c.get("/v1/status")
            assert gone.status_code == 401
            assert "without activity" in gone.json()["detail"]
            assert c.get("/").status_code == 303


def _page_tag(c: httpx.Client) -> str:
    page = c.get("/").text
    return page.split('name="console-session" content="', 1)[1].split('"', 1)[0]


def test_the_status_answer_names_the_cookies_session_by_a_digest(tmp_path: Path) -> None:
    """A page knows another login replaced its cookie: the poll answer names the cookie's session by
    a digest, never its id or CSRF token; a bearer caller carries no session."""
    with running_serve(tmp_path) as serve:
        first, first_csrf = serve.console("halter")
        second, second_csrf = serve.console("approver")
        with closing(first), closing(second), serve.client("halter") as bearer:
            sessions = serve.server.services.sessions
            tags = []
            for c, csrf in ((first, first_csrf), (second, second_csrf)):
                tag = _page_tag(c)
                session = sessions.read(c.cookies[sessions.cookie])
                assert c.get("/v1/status").json()["session"] == tag == session.tag
                assert len(tag) == 20
                assert session.sid not in tag
                assert csrf not in tag
                tags.append(tag)
            assert tags[0] != tags[1]
            # The cookie of one login sent by another's page: the answer names the other session.
            second.cookies.set(sessions.cookie, first.cookies[sessions.cookie])
            assert second.get("/v1/status").json()["session"] == tags[0]
            assert bearer.get("/v1/status").json()["session"] is None


def test_a_login_right_after_a_revocation_is_not_ended_by_it(tmp_path: Path) -> None:
    """The generations are read fresh at login, not from a list up to ``token_refresh`` old."""
    settings = ServeSettings(path=tmp_path / "serve.db", token_refresh=2.0)
    with running_serve(tmp_path, serve=settings) as serve:
        services = serve.server.services
        c = httpx.Client(base_url=serve.url, timeout=30.0, follow_redirects=False)
        with closing(c):
            nonce = c.get("/login").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            services.revocations.generations(services.tokens.verify(serve.tokens["halter"]))
            # Another replica ends the sessions; this one's list in memory does not know yet.
            services.revocations._store.revoke_sessions(
                "halter-1", by="elsewhere", reason="", at=datetime.now(UTC)
            )
            login = c.post(
                "/login",
                data={"token": serve.tokens["halter"], "csrf": nonce},
                headers={"Origin": serve.url},
            )
            assert login.status_code == 303
            time.sleep(2.2)  # past token_refresh: the list in memory knows the revocation now
            assert c.get("/v1/status").status_code == 200


def _listen(serve: Running, **kwargs: Any) -> tuple[list[str], threading.Thread, threading.Event]:
    """Read ``/v1/events`` on a thread: the lines seen, the thread, and 'the snapshot arrived'."""
    lines: list[str] = []
    opened = threading.Event()

    def read() -> None:
        with httpx.stream("GET", f"{serve.url}/v1/events", timeout=30, **kwargs) as answer:
            assert answer.status_code == 200
            for line in answer.iter_lines():
                lines.append(line)
                if line.startswith("event: snapshot"):
                    opened.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return lines, thread, opened


def test_an_open_event_stream_ends_with_its_session_or_token(
    serve: Running, idp: IdentityProvider
) -> None:
    c, _ = _sso(serve, idp, ERIN)
    with closing(c):
        cookie = {
            serve.server.services.sessions.cookie: c.cookies[serve.server.services.sessions.cookie]
        }
        by_session, session_thread, session_open = _listen(serve, cookies=cookie)
        token = {"Authorization": f"Bearer {serve.tokens['viewer']}"}
        by_token, token_thread, token_open = _listen(serve, headers=token)
        assert session_open.wait(10)
        assert token_open.wait(10)
        with serve.client("admin") as admin:
            assert (
                admin.post("/v1/sessions/revocations", json={"person": ERIN["email"]}).status_code
                == 200
            )
        assert serve.server.services.tokens.revoke("viewer-1", by="test")
        time.sleep(0.3)  # token_refresh is 0.2 s here
        with serve.client("halter") as h:
            assert h.post("/v1/halt", json={"reason": "seen by whom?"}).status_code == 200
        session_thread.join(10)
        token_thread.join(10)
    assert not session_thread.is_alive(), "the stream of the ended session is closed"
    assert not token_thread.is_alive(), "the stream of the revoked token is closed"
    for lines in (by_session, by_token):
        assert not any(line.startswith("event: halt") for line in lines), lines


def test_a_hanging_store_never_stalls_the_server_through_a_console_page(tmp_path: Path) -> None:
    """Sessions are checked against lists kept in memory; a due re-read from a page handler runs
    off the event loop, so a locked store delays no other request (here: /healthz, a halt)."""
    import sqlite3

    with running_serve(tmp_path) as serve:
        c, _ = serve.console("viewer")
        with closing(c):
            locker = sqlite3.connect(tmp_path / "serve.db", isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")  # every read of the store waits its busy timeout
            try:
                time.sleep(0.3)  # past token_refresh: the lists are due for a re-read
                page = threading.Thread(target=lambda: c.get("/"), daemon=True)
                page.start()
                time.sleep(0.05)
                with serve.client("halter") as h:
                    started = time.monotonic()
                    assert h.get("/healthz").status_code == 200
                    health = time.monotonic() - started
                    started = time.monotonic()
                    assert h.post("/v1/halt", json={"reason": "locked store"}).status_code == 200
                    halt = time.monotonic() - started
                page.join(30)
            finally:
                locker.execute("ROLLBACK")
                locker.close()
    assert health < 1.0, f"/healthz waited {health:.1f} s behind a page's store read"
    assert halt < 3.0, f"the halt waited {halt:.1f} s"


def test_logging_out_ends_a_copy_of_the_cookie_too(serve: Running, idp: IdentityProvider) -> None:
    c, csrf = _sso(serve, idp, ERIN)
    with closing(c):
        copy = c.cookies[serve.server.services.sessions.cookie]
        other, _ = _sso(serve, idp, ERIN)  # the same person in another browser
        with closing(other):
            out = c.post("/logout", headers={"Origin": serve.url}, follow_redirects=False)
            assert out.status_code == 303
            replayed = _status(serve, copy)
            assert replayed.status_code == 401
            assert "logged out" in replayed.json()["detail"]
            assert other.get("/v1/status").status_code == 200, "only that session ended"
        assert csrf
    with serve.client("admin") as admin:
        listed = admin.get("/v1/sessions/revocations").json()["revocations"]
    assert listed == [], "a logout is not a revocation of the person"

"""OIDC bearer JWTs of a person an admin revoked: refused when issued before the revocation.

The tokens are real, signed by the local identity provider of ``tests/test_serve_oidc.py``.
A revocation is made through the API, or written to the store with an earlier time, as a
replica (or the command line) whose clock read that time would write it. Two replicas and a
replica started after the revocation: ``tests/test_serve_replicas.py``.
"""

from __future__ import annotations

import html
import math
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from breakglass.clock import parse_iso
from tests.test_serve_oidc import IdentityProvider, sso_serve
from tests.test_serve_sessions import _audited

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from breakglass.testing.serve import Running

pytestmark = pytest.mark.live

ERIN: dict[str, Any] = {"sub": "user-7", "email": "Erin@Example.com", "groups": ["governance"]}
SKEW = 60.0  # revocation_skew's default
REVOKED = "an admin revoked this person's access"


@pytest.fixture
def serve(
    tmp_path: Path, idp: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Running]:
    """Serve trusting ``idp``, with a resumption gate: one approval (no checklist), then the resume."""
    policy = tmp_path / "policy.toml"
    policy.write_text("[resume]\napprovals = 1\nchecklist = []\n", encoding="utf-8")
    monkeypatch.setenv("BREAKGLASS_POLICY_FILE", str(policy))
    with sso_serve(tmp_path, idp, token_refresh=0.2) as running:
        yield running


def _as(serve: Running, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=serve.url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    )


def _halt(serve: Running) -> None:
    with serve.client("halter") as h:
        assert h.post("/v1/halt", json={"reason": "to be resumed"}).status_code == 200
    assert serve.wait_active(False)


def _revoke_at(serve: Running, person: str, at: datetime) -> float:
    """Write a revocation made at ``at`` (another replica's clock); its recorded time, epoch s."""
    store = serve.server.services.revocations._store
    done = store.revoke_sessions(person, by="another replica", reason="", at=at)
    return parse_iso(done.revoked_at).timestamp()


def _until(answer: Callable[[], httpx.Response], status: int) -> httpx.Response:
    """``answer()`` once it has ``status``: within a few re-reads of the list (0.2 s each)."""
    deadline = time.monotonic() + 10
    while True:
        got = answer()
        if got.status_code == status or time.monotonic() > deadline:
            assert got.status_code == status, got.text
            return got
        time.sleep(0.05)


def _refused(answer: httpx.Response, token: str) -> str:
    """The reason of a revoked token's 401, which shows no part of the token."""
    assert answer.status_code == 401, answer.text
    assert answer.json()["type"] == "/problems/unauthenticated"
    detail: str = answer.json()["detail"]
    assert REVOKED in detail, detail
    for part in token.split("."):
        assert part not in answer.text
    return detail


def test_a_revoked_persons_earlier_token_is_refused_for_every_action(
    serve: Running, idp: IdentityProvider
) -> None:
    earlier = idp.token(**ERIN)
    sam = idp.token(sub="user-8", email="sam@example.com", groups=["governance"])
    with _as(serve, earlier) as erin:
        assert erin.get("/v1/whoami").json()["role"] == "approver"
    _halt(serve)
    with serve.client("admin") as admin:
        done = admin.post(
            "/v1/sessions/revocations",
            json={"person": "erin@example.com", "reason": "left the team"},
        )
        assert done.status_code == 200, done.text

    # Matched by the name in any case; approvals and resumes first, halts too (as a session).
    with _as(serve, earlier) as erin:
        _refused(erin.post("/v1/resume/approvals", json={}), earlier)
        resume = {"reason": "all clear", "classification": "precautionary"}
        detail = _refused(erin.post("/v1/resume", json=resume), earlier)
        assert "issued before that" in detail
        _refused(erin.post("/v1/halt", json={"reason": "x"}), earlier)
        _refused(erin.get("/v1/status"), earlier)
        _refused(erin.get("/v1/whoami"), earlier)
    # A token the provider dates just after the revocation is within the allowance: refused too.
    just_after = idp.token(**ERIN)
    with _as(serve, just_after) as erin:
        assert f"within the {SKEW:g} s" in _refused(erin.get("/v1/whoami"), just_after)
    # Nor can the token start a console session, whose generations would be fresh.
    with httpx.Client(base_url=serve.url, timeout=30.0) as browser:
        nonce = browser.get("/login").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        login = browser.post(
            "/login", data={"token": earlier, "csrf": nonce}, headers={"Origin": serve.url}
        )
        assert login.status_code == 401
        assert REVOKED in html.unescape(login.text)
        assert serve.server.services.sessions.cookie not in browser.cookies

    with serve.client("approver") as approver:
        assert approver.get("/v1/resume").json()["approvals"] == []
    assert serve.server.bridge.engine.active is False, "still halted"
    with _as(serve, sam) as other:
        assert other.get("/v1/whoami").status_code == 200, "someone else's token is untouched"
    denied = [r for r in _audited(serve, "auth-denied") if REVOKED in r["comment"]]
    assert denied[-1]["actor"]["id"] == f"oidc:{idp.issuer}#user-7", "the denial says whose"
    assert earlier.split(".")[2] not in str(denied)


def test_the_skew_allowance_errs_toward_refusing_and_a_later_token_resumes(
    serve: Running, idp: IdentityProvider
) -> None:
    _halt(serve)
    subject = f"oidc:{idp.issuer}#user-7"
    revoked = _revoke_at(serve, subject, datetime.now(UTC) - timedelta(seconds=SKEW + 30))
    edge = math.ceil(revoked + SKEW)  # the first whole second at or past the allowance
    inside = idp.token(**ERIN, iat=edge - 1)
    with _as(serve, inside) as erin:
        _refused(_until(lambda: erin.get("/v1/whoami"), 401), inside)
        _refused(erin.post("/v1/resume/approvals", json={}), inside)
    later = idp.token(**ERIN, iat=edge)
    with _as(serve, later) as erin:
        assert erin.get("/v1/whoami").json()["subject"] == subject
        approved = erin.post("/v1/resume/approvals", json={"comment": "after the revocation"})
        assert approved.status_code == 200, approved.text
        resume = {"reason": "fixed", "classification": "precautionary"}
        resumed = erin.post("/v1/resume", json=resume)
        assert resumed.status_code == 200, resumed.text
    assert serve.wait_active(True)


def test_a_token_without_iat_is_refused_until_no_earlier_token_can_be_alive(
    serve: Running, idp: IdentityProvider
) -> None:
    undated = idp.token(**ERIN, iat=None)
    with _as(serve, undated) as erin:
        assert erin.get("/v1/whoami").status_code == 200, "no revocation: accepted"
        with serve.client("admin") as admin:
            ended = admin.post("/v1/sessions/revocations", json={"person": "erin@example.com"})
            assert ended.status_code == 200
        assert "has no iat" in _refused(erin.get("/v1/whoami"), undated)
        # The longest token lifetime (24 h) and the allowance not yet past: still refused.
        day = timedelta(hours=24, seconds=SKEW)
        _revoke_at(serve, "erin@example.com", datetime.now(UTC) - day + timedelta(seconds=120))
        time.sleep(0.5)  # two re-reads: the list in memory holds the earlier time now
        _refused(erin.get("/v1/whoami"), undated)
        # Past them, every token issued before the revocation has expired: accepted again.
        _revoke_at(serve, "erin@example.com", datetime.now(UTC) - day - timedelta(seconds=5))
        assert _until(lambda: erin.get("/v1/whoami"), 200).json()["role"] == "approver"

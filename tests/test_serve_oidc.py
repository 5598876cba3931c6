"""OIDC bearer tokens against a local JWKS server: signature, issuer, audience, expiry, role claim.

The identity provider here is a small HTTP server that publishes its public
keys as a JWKS document, exactly what serve fetches from a real one; tokens
are signed with ``joserfc`` as an identity provider would sign them.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from breakglass.serve.settings import OidcSettings, ServeSettings
from breakglass.testing.serve import Running, running_serve

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.live

AUDIENCE = "breakglass-serve"


class IdentityProvider:
    """An OpenID provider on loopback: discovery, JWKS, an authorization endpoint that signs in
    ``user`` at once, and a token endpoint that checks the code, the redirect URI and PKCE."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)]
        self.fetches = 0
        self.user: dict[str, Any] = {}
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.keys_path = "/.well-known/jwks.json"
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                if path == provider.keys_path:
                    provider.fetches += 1
                    self._send(200, {"keys": [k.as_dict(private=False) for k in provider.keys]})
                elif path == "/.well-known/openid-configuration":
                    self._send(200, provider.discovery())
                elif path == "/authorize":
                    self._send(302, {}, {"Location": provider.authorize(dict(parse_qsl(query)))})
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                form = dict(
                    parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode())
                )
                status, body = provider.redeem(form)
                self._send(status, body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}{self.keys_path}",
        }

    def authorize(self, query: dict[str, str]) -> str:
        """Sign ``user`` in at once; the redirect back with a one-time code."""
        assert query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def redeem(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.token_requests.append(form)
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None or form.get("redirect_uri") != asked["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        if form.get("client_id") != asked["client_id"]:
            return 400, {"error": "invalid_client"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != asked["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        claims = {"aud": asked["client_id"], "nonce": asked["nonce"], **self.user}
        return 200, {"id_token": self.token(**claims), "token_type": "Bearer", "access_token": "x"}

    def token(self, key: Any = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-42",
            "email": "dana@example.com",
            "iat": now,
            "exp": now + 300,
            "groups": ["sre"],
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(header or {"alg": "RS256", "kid": "k1"}, body, key or self.keys[0])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def sso_serve(tmp_path: Path, idp: IdentityProvider, **options: Any) -> Iterator[Running]:
    """Serve trusting ``idp``: group ``sre`` halts, ``governance`` approves."""
    oidc = OidcSettings(
        issuer=idp.issuer,
        audience=AUDIENCE,
        role_claim="groups",
        role_map={"sre": "halter", "governance": "approver"},
    )
    settings = ServeSettings(path=tmp_path / "serve.db", oidc=oidc, **options)
    with running_serve(tmp_path, serve=settings) as running:
        assert running.wait_active(True)
        yield running


@pytest.fixture
def serve(tmp_path: Path, idp: IdentityProvider) -> Iterator[Running]:
    with sso_serve(tmp_path, idp) as running:
        yield running


def _call(serve: Running, token: str, path: str = "/v1/whoami", **kwargs: Any) -> Any:
    with serve.client(headers={"Authorization": f"Bearer {token}"}) as c:
        if "json" in kwargs:
            return c.post(path, **kwargs)
        return c.get(path)


def test_a_valid_token_halts_as_the_person_it_names(serve: Running, idp: IdentityProvider) -> None:
    who = _call(serve, idp.token())
    assert who.status_code == 200, who.text
    assert who.json() == {
        "subject": f"oidc:{idp.issuer}#user-42",
        "name": "dana@example.com",
        "role": "halter",
        "kind": "oidc",
    }
    halted = _call(serve, idp.token(), "/v1/halt", json={"reason": "sso halt"})
    assert halted.status_code == 200, halted.text
    assert halted.json()["actor"]["name"] == "dana@example.com"
    assert serve.wait_active(False)
    refused = _call(serve, idp.token(), "/v1/resume", json={"reason": "not mine to do"})
    assert refused.status_code == 403
    resumed = _call(serve, idp.token(groups=["governance"]), "/v1/resume", json={"reason": "ok"})
    assert resumed.status_code == 200, resumed.text


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"aud": "another-service"}, "wrong audience"),
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"exp": None}, "no expiry"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
    ],
)
def test_invalid_claims_are_401(
    serve: Running, idp: IdentityProvider, claims: dict[str, Any], why: str
) -> None:
    response = _call(serve, idp.token(**claims))
    assert response.status_code == 401, why
    assert response.json()["type"] == "/problems/unauthenticated"


def test_forged_signatures_are_401(serve: Running, idp: IdentityProvider) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    assert _call(serve, idp.token(key=stranger)).status_code == 401
    # The public key used as an HMAC secret (algorithm confusion) is refused too.
    public = json.dumps(idp.keys[0].as_dict(private=False)).encode()
    confused = idp.token(key=OctKey.import_key(public), header={"alg": "HS256", "kid": "k1"})
    assert _call(serve, confused).status_code == 401
    # An unsigned token.
    head, body, _ = idp.token().split(".")
    assert _call(serve, f"{head}.{body}.").status_code == 401


def test_a_token_without_a_role_is_403(serve: Running, idp: IdentityProvider) -> None:
    response = _call(serve, idp.token(groups=["marketing"]))
    assert response.status_code == 403
    assert "groups" in response.json()["detail"]


def test_a_rotated_key_is_fetched_without_a_restart(serve: Running, idp: IdentityProvider) -> None:
    assert _call(serve, idp.token()).status_code == 200
    fetched = idp.fetches
    new = RSAKey.generate_key(2048, parameters={"kid": "k2"}, private=True)
    idp.keys.append(new)
    time.sleep(1.1)  # an unknown key id triggers at most one fetch a second
    token = idp.token(key=new, header={"alg": "RS256", "kid": "k2"})
    assert _call(serve, token).status_code == 200
    assert idp.fetches == fetched + 1


# ------------------------------------------------------------------ console single sign-on


def _sso_login(serve: Running) -> httpx.Client:
    c = httpx.Client(base_url=serve.url, timeout=30.0)
    page = c.get("/login")
    assert 'href="/login/oidc"' in page.text
    return c


def test_console_single_sign_on_with_pkce(serve: Running, idp: IdentityProvider) -> None:
    idp.user = {"sub": "user-7", "email": "erin@example.com", "groups": ["governance"]}
    with closing(_sso_login(serve)) as c:
        landed = c.get("/login/oidc", follow_redirects=True)
        assert landed.status_code == 200, landed.text
        assert str(landed.url) == f"{serve.url}/"
        assert "erin@example.com" in landed.text
        assert c.get("/v1/whoami").json()["role"] == "approver"
    sent = idp.token_requests[-1]
    assert sent["grant_type"] == "authorization_code"
    assert sent["client_id"] == AUDIENCE
    assert len(sent["code_verifier"]) >= 43


def test_single_sign_on_refuses_a_forged_state_a_replayed_code_and_no_role(
    serve: Running, idp: IdentityProvider
) -> None:
    idp.user = {"sub": "user-8", "email": "sam@example.com", "groups": ["sre"]}
    with closing(_sso_login(serve)) as c:
        to_idp = c.get("/login/oidc")
        assert to_idp.status_code == 303
        back = httpx.get(to_idp.headers["location"], timeout=10)
        callback = back.headers["location"]
        forged = c.get(callback.replace("state=", "state=x"))
        assert forged.status_code == 403
        assert "does not match" in forged.text
        ok = c.get(callback)  # the real answer still works once
        assert ok.status_code == 303
        replayed = c.get(callback)
        assert replayed.status_code in (401, 403)
    # A callback in a browser that never started the login (no cookie): refused.
    with httpx.Client(base_url=serve.url, timeout=30.0) as stranger:
        refused = stranger.get("/login/oidc/callback?code=abc&state=def")
        assert refused.status_code == 401
    idp.user = {"sub": "user-9", "email": "pat@example.com", "groups": ["marketing"]}
    with closing(_sso_login(serve)) as c:
        denied = c.get("/login/oidc", follow_redirects=True)
        assert denied.status_code == 403
        assert "no breakglass role" in denied.text


def test_the_signing_keys_are_found_through_discovery(tmp_path: Path) -> None:
    """A provider whose keys are not at /.well-known/jwks.json (Okta, Entra ID): discovery names them."""
    idp = IdentityProvider()
    idp.keys_path = "/oauth2/v1/keys"
    try:
        oidc = OidcSettings(
            issuer=idp.issuer, audience=AUDIENCE, role_claim="groups", role_map={"sre": "halter"}
        )
        with running_serve(
            tmp_path, serve=ServeSettings(path=tmp_path / "serve.db", oidc=oidc)
        ) as serve:
            assert _call(serve, idp.token()).status_code == 200
    finally:
        idp.close()

"""OIDC bearer tokens against a local JWKS server: signature, issuer, audience, expiry, role claim.

The identity provider here is a small HTTP server that publishes its public
keys as a JWKS document, exactly what serve fetches from a real one; tokens
are signed with ``joserfc`` as an identity provider would sign them.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import TYPE_CHECKING, Any

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
    """Publishes a JWKS on loopback and signs tokens with its private keys."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)]
        self.fetches = 0
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.fetches += 1
                body = json.dumps(
                    {"keys": [k.as_dict(private=False) for k in provider.keys]}
                ).encode()
                self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

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


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


@pytest.fixture
def serve(tmp_path: Path, idp: IdentityProvider) -> Iterator[Running]:
    oidc = OidcSettings(
        issuer=idp.issuer,
        audience=AUDIENCE,
        role_claim="groups",
        role_map={"sre": "halter", "governance": "approver"},
    )
    settings = ServeSettings(path=tmp_path / "serve.db", oidc=oidc)
    with running_serve(tmp_path, serve=settings) as running:
        assert running.wait_active(True)
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

"""Console login through single sign-on: OpenID Connect authorization code flow with PKCE.

``GET /login/oidc`` sends the browser to the provider with a fresh ``state``,
``nonce`` and PKCE challenge, kept in a short-lived signed cookie;
``GET /login/oidc/callback`` checks the ``state``, redeems the code at the
provider's token endpoint with the PKCE verifier, checks the ID token
(signature by the provider's JWKS, issuer, audience = the client id, expiry,
the ``nonce``) and the role claim, and starts a console session. The provider's
endpoints come from its discovery document.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

import httpx
from fastapi import Request  # at run time: FastAPI reads the routes' annotations
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import RedirectResponse, Response

from breakglass.errors import AuthError
from breakglass.serve.sessions import own_origin

if TYPE_CHECKING:
    from fastapi import FastAPI

    from breakglass.serve.app import Services
    from breakglass.serve.auth import Identity

logger = logging.getLogger("breakglass.serve")

COOKIE = "breakglass_sso"
_SALT = "breakglass.console.sso"
_MAX_AGE = 600
_TIMEOUT = 10.0


class Discovery:
    """The provider's discovery document, fetched once and kept for an hour."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._doc: dict[str, Any] | None = None
        self._at = -float("inf")

    def get(self) -> dict[str, Any]:
        """The document; raises :class:`AuthError` when the provider cannot be reached."""
        with self._lock:
            if self._doc is not None and time.monotonic() - self._at < 3600:
                return self._doc
            try:
                doc = _fetch(self._url)
            except (httpx.HTTPError, ValueError) as exc:
                raise AuthError(
                    f"single sign-on is unavailable ({type(exc).__name__}); log in with an API token"
                ) from None
            self._doc, self._at = doc, time.monotonic()
            return doc


def _fetch(url: str) -> dict[str, Any]:
    answer = httpx.get(url, timeout=_TIMEOUT)
    answer.raise_for_status()
    doc = answer.json()
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(k), str) for k in ("authorization_endpoint", "token_endpoint")
    ):
        raise ValueError("the discovery document names no authorization or token endpoint")
    return doc


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _redirect_uri(request: Request, services: Services) -> str:
    return own_origin(request, services.public_origin) + "/login/oidc/callback"


def _redeem(
    services: Services, discovery: Discovery, code: str, verifier: str, redirect: str
) -> str:
    """Exchange the code for an ID token (blocking)."""
    assert services.oidc is not None  # noqa: S101 -- the routes exist only with OIDC
    s = services.oidc.settings
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "client_id": s.client,
        "code_verifier": verifier,
    }
    if s.client_secret is not None:
        form["client_secret"] = s.client_secret.get_secret_value()
    try:
        answer = httpx.post(discovery.get()["token_endpoint"], data=form, timeout=_TIMEOUT)
    except httpx.HTTPError as exc:
        raise AuthError(f"the sign-on provider did not answer ({type(exc).__name__})") from None
    if answer.status_code != 200:
        raise AuthError(f"the sign-on provider refused the login (HTTP {answer.status_code})")
    try:
        token = answer.json()["id_token"]
    except (ValueError, KeyError, TypeError):
        raise AuthError("the sign-on provider's answer has no ID token") from None
    if not isinstance(token, str):
        raise AuthError("the sign-on provider's answer has no ID token")
    return token


class LoginEnd(Protocol):
    """**Protocol**: ends a login: a session and the console, or the login form with the error."""

    def __call__(
        self, request: Request, identity: Identity | None, exc: AuthError | None
    ) -> Response:
        """The response that ends the login."""
        ...


async def _complete(
    request: Request, services: Services, found: Discovery, code: str, state: str, error: str
) -> Identity:
    """The identity the provider vouches for; raises :class:`AuthError` otherwise."""
    if error:
        raise AuthError(f"the sign-on provider said: {error[:100]}")
    signer = URLSafeTimedSerializer(services.sessions.key, salt=_SALT)
    try:
        kept = signer.loads(request.cookies.get(COOKIE, ""), max_age=_MAX_AGE)
    except BadSignature:
        raise AuthError("the sign-on attempt expired or came from elsewhere; try again") from None
    if not code or not secrets.compare_digest(str(kept.get("state", "")), state):
        raise AuthError("the sign-on answer does not match this browser's attempt", status=403)
    redirect = _redirect_uri(request, services)
    token = await asyncio.to_thread(_redeem, services, found, code, kept["verifier"], redirect)
    oidc = services.oidc
    assert oidc is not None  # noqa: S101 -- the callback checked it
    return await asyncio.to_thread(
        lambda: oidc.verify(token, audience=oidc.settings.client, nonce=kept["nonce"])
    )


def add_sso(app: FastAPI, on_login: LoginEnd) -> None:
    """Mount ``/login/oidc`` and its callback; ``on_login(request, identity)`` starts the session."""

    def signer(services: Services) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(services.sessions.key, salt=_SALT)

    discoveries: dict[str, Discovery] = {}

    def discovery(services: Services) -> Discovery:
        assert services.oidc is not None  # noqa: S101 -- checked by the caller
        url = services.oidc.settings.discovery_url
        return discoveries.setdefault(url, Discovery(url))

    @app.get("/login/oidc", include_in_schema=False)
    async def start(request: Request) -> Response:
        services: Services = request.app.state.services
        if services.oidc is None or not services.oidc.settings.login:
            return RedirectResponse("/login", status_code=303)
        from breakglass.serve.console import login_page

        try:
            doc = await asyncio.to_thread(discovery(services).get)
        except AuthError as exc:
            return login_page(request, str(exc), 503)
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        query = urlencode(
            {
                "response_type": "code",
                "client_id": services.oidc.settings.client,
                "redirect_uri": _redirect_uri(request, services),
                "scope": "openid email profile",
                "state": state,
                "nonce": nonce,
                "code_challenge": _challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        response = RedirectResponse(f"{doc['authorization_endpoint']}?{query}", status_code=303)
        response.set_cookie(
            COOKIE,
            signer(services).dumps({"state": state, "nonce": nonce, "verifier": verifier}),
            max_age=_MAX_AGE,
            httponly=True,
            samesite="lax",  # the provider's redirect back is a cross-site top-level navigation
            secure=services.sessions.secure,
            path="/login/oidc",
        )
        return response

    @app.get("/login/oidc/callback", include_in_schema=False)
    async def callback(
        request: Request, code: str = "", state: str = "", error: str = ""
    ) -> Response:
        services: Services = request.app.state.services

        if services.oidc is None:
            return RedirectResponse("/login", status_code=303)
        try:
            identity = await _complete(request, services, discovery(services), code, state, error)
        except AuthError as exc:
            # On a thread: counting the failure may wait on the shared store.
            return await asyncio.to_thread(on_login, request, None, exc)
        response: Response = await asyncio.to_thread(on_login, request, identity, None)
        response.delete_cookie(COOKIE, path="/login/oidc")
        return response

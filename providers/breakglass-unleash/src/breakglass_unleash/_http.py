"""HTTP helpers shared by the admin and audit clients: sessions, bounded retries, safe messages.

Every message built here names a setting or an endpoint, never a token: the
tokens travel only in the ``Authorization`` header, and nothing here prints
headers.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import requests

from breakglass.retry import Outcome, RetryPolicy, parse_retry_after, safe_url
from breakglass.retry import request_with_retries as _request_with_retries

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import SecretStr

logger = logging.getLogger("breakglass.unleash")

USER_AGENT = "breakglass-unleash"


def new_session(token: SecretStr) -> requests.Session:
    """A keep-alive session that sends ``token`` raw in ``Authorization`` (Unleash wants no scheme)."""
    session = requests.Session()
    # Proxies from the environment would send loopback traffic elsewhere and leak the header.
    session.trust_env = False
    session.headers.update(
        {
            "Authorization": token.get_secret_value(),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
    )
    return session


def describe_exception(exc: BaseException, url: str) -> str:
    """A short, secret-free sentence for a failed request."""
    where = safe_url(url)
    if isinstance(exc, requests.Timeout):
        return f"no answer from {where} within the request timeout"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect to {where}"
    if isinstance(exc, ValueError):
        return f"malformed response from {where}"
    return f"{type(exc).__name__} on {where}"


def server_message(response: requests.Response, secrets: tuple[str, ...] = ()) -> str:
    """The server's own error message, shortened and scrubbed of any secret."""
    text = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or body.get("name")
        details = body.get("details")
        if isinstance(details, list) and details and isinstance(details[0], dict):
            message = details[0].get("message") or message
        if isinstance(message, str):
            text = message
    text = " ".join(text.split())[:200]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "**********")
    return text


def retry_after_seconds(response: requests.Response, default: float) -> float:
    """The server's ``Retry-After`` (seconds or an HTTP date), else ``default``."""
    wait = parse_retry_after(response.headers.get("Retry-After"))
    return default if wait is None else wait


def request_with_retries(
    send: Callable[[float], requests.Response],
    url: str,
    policy: RetryPolicy,
    *,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome[requests.Response]:
    """:func:`breakglass.retry.request_with_retries` for ``requests``, with this vendor's wait hints."""
    return _request_with_retries(
        send,
        url,
        policy,
        timeout=timeout,
        transient=(requests.RequestException,),
        describe=describe_exception,
        server_wait=_server_wait,
        sleep=sleep,
    )


def _server_wait(response: requests.Response, backoff: float) -> float | None:
    if response.status_code in (429, 503) and response.headers.get("Retry-After"):
        return retry_after_seconds(response, backoff)
    return None


def json_or_none(response: requests.Response) -> Any:
    """The response body as JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None

"""HTTP helpers for the management calls: sessions, bounded retries, secret-free messages.

Every message built here names a setting or an endpoint, never a credential:
credentials travel only in headers, and nothing here prints headers.
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

logger = logging.getLogger("breakglass.flagsmith")

USER_AGENT = "breakglass-flagsmith"
MASK = "**********"


def new_session(authorization: SecretStr) -> requests.Session:
    """A keep-alive session sending ``authorization`` (scheme included) on every request."""
    session = requests.Session()
    # Proxies from the environment would send loopback traffic elsewhere and leak the header;
    # .netrc would silently replace the Authorization header.
    session.trust_env = False
    session.headers.update(
        {
            "Authorization": authorization.get_secret_value(),
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
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"truncated answer from {where}"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect to {where}"
    if isinstance(exc, ValueError):
        return f"malformed answer from {where}"
    return f"{type(exc).__name__} on {where}"


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret (and a credential without its scheme) masked."""
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, MASK)
        _, _, bare = secret.partition(" ")
        if len(bare) >= 8:
            text = text.replace(bare, MASK)
    return text


def server_message(response: requests.Response, secrets: tuple[str, ...] = ()) -> str:
    """The server's own error message (DRF's ``detail`` or field errors), shortened and scrubbed."""
    body = json_or_none(response)
    text = ""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str):
            text = detail
        else:
            parts = []
            for key, value in body.items():
                if isinstance(value, list) and value and isinstance(value[0], str):
                    parts.append(f"{key}: {value[0]}")
            text = "; ".join(parts)
    elif isinstance(body, list) and body and isinstance(body[0], str):
        text = body[0]
    text = " ".join(text.split())[:200]
    return scrub(text, secrets)


def json_or_none(response: requests.Response) -> Any:
    """The response body as JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


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

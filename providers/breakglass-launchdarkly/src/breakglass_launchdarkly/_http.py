"""HTTP helpers for the REST API and the second-opinion poll: sessions, bounded retries, safe messages.

Every message built here names a setting or an endpoint, never a key or
token: those travel only in the ``Authorization`` header, and nothing here
prints headers.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

import requests

from breakglass.retry import Outcome, RetryPolicy, parse_retry_after, safe_url
from breakglass.retry import request_with_retries as _request_with_retries

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import SecretStr

logger = logging.getLogger("breakglass.launchdarkly")

USER_AGENT = "breakglass-launchdarkly"


def new_session(secret: SecretStr, base_url: str, http_proxy: str | None) -> requests.Session:
    """A keep-alive session that sends ``secret`` raw in ``Authorization`` (LaunchDarkly wants no scheme).

    ``trust_env`` is off: with it, requests would take credentials from
    ``~/.netrc`` and overwrite the header. Proxies are set explicitly instead,
    as the LaunchDarkly SDK chooses them: the ``http_proxy`` setting, else the
    environment's ``https_proxy`` / ``http_proxy`` honouring ``no_proxy``.
    """
    session = requests.Session()
    session.trust_env = False
    if http_proxy:
        session.proxies = {"http": http_proxy, "https": http_proxy}
    else:
        session.proxies = dict(requests.utils.get_environ_proxies(base_url))
    session.headers.update(
        {
            "Authorization": secret.get_secret_value(),
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


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by asterisks."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "**********")
    return text


def server_message(response: requests.Response, secrets: tuple[str, ...] = ()) -> str:
    """LaunchDarkly's own error message (``{"code", "message"}``), shortened and scrubbed of any secret."""
    text = ""
    body = json_or_none(response)
    if isinstance(body, dict):
        message = body.get("message")
        code = body.get("code")
        if isinstance(message, str):
            text = f"{code}: {message}" if isinstance(code, str) else message
    return scrub(" ".join(text.split())[:200], secrets)


def rate_limit_wait(response: requests.Response, default: float) -> float:
    """Seconds to wait after a 429: ``Retry-After`` first, then ``X-Ratelimit-Reset``, else ``default``.

    ``Retry-After`` is seconds or an HTTP date; ``X-Ratelimit-Reset`` is the
    epoch time in **milliseconds** when the window resets (LaunchDarkly's REST API docs).
    """
    wait = parse_retry_after(response.headers.get("Retry-After"))
    if wait is not None:
        return wait
    reset = response.headers.get("X-Ratelimit-Reset")
    if reset:
        try:
            return max(0.0, int(reset) / 1000.0 - time.time())
        except ValueError:
            pass
    return default


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
    if response.status_code != 429:
        return None
    # A little jitter, so a fleet does not come back at the same instant.
    return rate_limit_wait(response, backoff) + random.uniform(0, 0.05)  # noqa: S311


def json_or_none(response: requests.Response) -> Any:
    """The response body as JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None

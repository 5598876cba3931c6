"""HTTP helpers for the REST API and the second-opinion poll: sessions, bounded retries, safe messages.

Every message built here names a setting or an endpoint, never a key or
token: those travel only in the ``Authorization`` header, and nothing here
prints headers.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import SecretStr

logger = logging.getLogger("breakglass.launchdarkly")

USER_AGENT = "breakglass-launchdarkly"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def safe_url(url: str) -> str:
    """The URL without user info or query string, fit for a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    reset = response.headers.get("X-Ratelimit-Reset")
    if reset:
        try:
            return max(0.0, int(reset) / 1000.0 - time.time())
        except ValueError:
            pass
    return default


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries: at most ``attempts`` tries and ``budget`` seconds in all."""

    attempts: int = 4
    budget: float = 15.0
    base_delay: float = 0.2
    max_delay: float = 2.0
    max_rate_limit_wait: float = 10.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311 -- jitter, not crypto


@dataclass(frozen=True, slots=True)
class Outcome:
    """The last answer of a retried request: a response, or the error of the last try."""

    response: requests.Response | None
    error: str | None
    attempts: int


def request_with_retries(
    send: Callable[[float], requests.Response],
    url: str,
    policy: RetryPolicy,
    *,
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Call ``send(timeout)`` until it answers with a non-retryable status or the budget is spent.

    Retries connection errors, timeouts, 5xx and 429. A 429 waits as the
    server says (:func:`rate_limit_wait`, capped at ``policy.max_rate_limit_wait``)
    plus a little jitter, so a fleet does not come back at the same instant.
    Never waits past ``policy.budget``.
    """
    started = time.monotonic()
    last = Outcome(None, "not attempted", 0)
    for attempt in range(1, policy.attempts + 1):
        remaining = policy.budget - (time.monotonic() - started)
        if remaining <= 0:
            break
        try:
            response = send(min(timeout, remaining))
        except requests.RequestException as exc:
            last = Outcome(None, describe_exception(exc, url), attempt)
            wait = policy.delay(attempt)
        else:
            if response.status_code not in RETRY_STATUSES:
                return Outcome(response, None, attempt)
            last = Outcome(response, None, attempt)
            wait = policy.delay(attempt)
            if response.status_code == 429:
                told = rate_limit_wait(response, wait)
                wait = min(policy.max_rate_limit_wait, told) + random.uniform(0, 0.05)  # noqa: S311
        if attempt == policy.attempts:
            break
        remaining = policy.budget - (time.monotonic() - started)
        if wait >= remaining:
            break
        logger.debug("retrying %s in %.2f s (attempt %d)", safe_url(url), wait, attempt)
        sleep(wait)
    return last


def json_or_none(response: requests.Response) -> Any:
    """The response body as JSON, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None

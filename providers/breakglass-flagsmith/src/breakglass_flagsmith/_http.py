"""HTTP helpers for the management calls: sessions, bounded retries, secret-free messages.

Every message built here names a setting or an endpoint, never a credential:
credentials travel only in headers, and nothing here prints headers.
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

logger = logging.getLogger("breakglass.flagsmith")

USER_AGENT = "breakglass-flagsmith"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MASK = "**********"


def safe_url(url: str) -> str:
    """The URL without user info, query string or fragment, fit for a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


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
    value = response.headers.get("Retry-After")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries: at most ``attempts`` tries and ``budget`` seconds in all."""

    attempts: int = 4
    budget: float = 15.0
    base_delay: float = 0.2
    max_delay: float = 2.0
    max_retry_after: float = 10.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311 -- jitter, not crypto


@dataclass(frozen=True, slots=True)
class Outcome:
    """The last answer of a retried request: a response, or why the last try failed."""

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

    Retries connection errors, timeouts, 5xx and 429 (honouring ``Retry-After``
    up to ``policy.max_retry_after``). Never waits past ``policy.budget``.
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
            if response.status_code in (429, 503) and response.headers.get("Retry-After"):
                wait = min(policy.max_retry_after, retry_after_seconds(response, wait))
        if attempt == policy.attempts:
            break
        remaining = policy.budget - (time.monotonic() - started)
        if wait >= remaining:
            break
        logger.debug("flagsmith: retrying %s in %.2f s (attempt %d)", safe_url(url), wait, attempt)
        sleep(wait)
    return last

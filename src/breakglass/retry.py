"""Bounded retries for the adapters' management calls (admin writes, audit pulls).

No HTTP library here: each adapter passes its own ``send`` function, the
exceptions that mean "try again", and how to read a server's wait hint
(``Retry-After``, rate-limit reset headers) from its response.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("breakglass")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers worth another try: rate limited, or the server's own failure."""


def safe_url(url: str) -> str:
    """The URL without user info, query string or fragment, fit for a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header value asks to wait (seconds or an HTTP date).

    ``None`` when there is no value or it is neither; a moment already past is 0.
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
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
    """The longest wait a server's hint (``Retry-After`` and the like) is obeyed for."""

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311 -- jitter, not crypto


class HasStatus(Protocol):
    """**Protocol**: a response with an HTTP status code."""

    @property
    def status_code(self) -> int:
        """The HTTP status code."""
        ...


ResponseT = TypeVar("ResponseT", bound=HasStatus)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[ResponseT]):
    """The last answer of a retried request: a response, or why the last try failed."""

    response: ResponseT | None
    error: str | None
    attempts: int


def request_with_retries(  # noqa: PLR0913 -- each part is the adapter's to give
    send: Callable[[float], ResponseT],
    url: str,
    policy: RetryPolicy,
    *,
    timeout: float,
    transient: tuple[type[BaseException], ...],
    describe: Callable[[BaseException, str], str],
    server_wait: Callable[[ResponseT, float], float | None],
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome[ResponseT]:
    """Call ``send(timeout)`` until it answers with a non-retryable status or the budget is spent.

    Retries the ``transient`` exceptions and :data:`RETRY_STATUSES`; after a
    retryable answer, ``server_wait(response, backoff)`` may name the wait the
    server asked for (obeyed up to ``policy.max_retry_after``). Never waits past
    ``policy.budget``.
    """
    started = time.monotonic()
    last: Outcome[ResponseT] = Outcome(None, "not attempted", 0)
    for attempt in range(1, policy.attempts + 1):
        remaining = policy.budget - (time.monotonic() - started)
        if remaining <= 0:
            break
        wait = policy.delay(attempt)
        try:
            response = send(min(timeout, remaining))
        except transient as exc:
            last = Outcome(None, describe(exc, url), attempt)
        else:
            if response.status_code not in RETRY_STATUSES:
                return Outcome(response, None, attempt)
            last = Outcome(response, None, attempt)
            told = server_wait(response, wait)
            if told is not None:
                wait = min(policy.max_retry_after, told)
        if attempt == policy.attempts:
            break
        if wait >= policy.budget - (time.monotonic() - started):
            break
        logger.debug("retrying %s in %.2f s (attempt %d)", safe_url(url), wait, attempt)
        sleep(wait)
    return last

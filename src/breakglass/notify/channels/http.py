"""The one HTTP client of the notification channels (httpx), and how answers are read.

Every HTTP channel posts through :class:`HttpSession` and reads the answer
with :func:`classify`, which applies the delivery policy the services
document: 2xx done; 408, 429 and 5xx (and network failures) retried,
obeying ``Retry-After``; any other 4xx never retried. Messages name the
service's host, never the URL: for Slack and Teams the URL is the credential.
"""

from __future__ import annotations

import email.utils
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from breakglass.clock import SYSTEM_CLOCK
from breakglass.errors import BreakglassError, ConfigurationError
from breakglass.notify.channels.base import Delivery, Outcome
from breakglass.retry import RETRY_STATUSES

if TYPE_CHECKING:
    import httpx

USER_AGENT = "breakglass-notify/1"
_RETRY = RETRY_STATUSES | {408}
_BODY_LIMIT = 200


def host_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what a message may say about a destination."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (a number or an HTTP date), else ``None``."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - SYSTEM_CLOCK.now()).total_seconds())


def snippet(response: httpx.Response) -> str:
    """The start of an answer's body, on one line (services explain errors there)."""
    text = " ".join(response.text.split())
    return text[:_BODY_LIMIT]


def classify(response: httpx.Response, service: str, *, accepted: bool = False) -> Delivery:
    """Read an answer by the common delivery policy.

    Args:
        response: The service's answer.
        service: Its name for the message (``PagerDuty``).
        accepted: Whether a 2xx only means "queued" (202-style services).
    """
    status = response.status_code
    if 200 <= status < 300:
        outcome = Outcome.ACCEPTED if accepted or status == 202 else Outcome.DELIVERED
        return Delivery(outcome, status, detail=f"{service} answered {status}")
    body = snippet(response)
    if status in _RETRY:
        return Delivery(
            Outcome.RETRY,
            status,
            detail=f"{service} answered {status} {body}".strip(),
            retry_after=retry_after(response),
        )
    hint = {
        401: "the credential is wrong",
        403: "the credential lacks the permission",
        404: "the destination does not exist",
        410: "the destination is gone: remove or replace it in the policy",
    }.get(status, "the request was refused")
    return Delivery(
        Outcome.FAILED, status, detail=f"{service} answered {status} ({hint}) {body}".strip()
    )


class HttpSession:
    """A pooled HTTP client shared by the sending threads (httpx is thread-safe)."""

    def __init__(self, *, verify: Any = True) -> None:
        try:
            import httpx
        except ImportError:
            raise ConfigurationError(
                "the notification channels need httpx: pip install 'breakglass[notify]'"
            ) from None

        self._httpx = httpx
        self._client = httpx.Client(
            headers={"user-agent": USER_AGENT},
            follow_redirects=False,
            verify=verify,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "HttpSession()"

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (no retries: the outbox decides when to try again).

        Raises:
            TransportError: The service could not be reached or did not answer in time.
        """
        try:
            return self._client.request(
                method, url, json=json, content=content, headers=headers, timeout=timeout
            )
        except self._httpx.TimeoutException:
            raise TransportError(f"no answer from {host_of(url)} within {timeout:g} s") from None
        except self._httpx.HTTPError as exc:
            # The exception text may quote the URL, which can be the credential.
            raise TransportError(f"cannot reach {host_of(url)}: {type(exc).__name__}") from None

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()


class TransportError(BreakglassError):
    """The request did not get an answer; the message names the host only."""

    def as_delivery(self) -> Delivery:
        """A retryable :class:`Delivery` for this failure."""
        return Delivery(Outcome.RETRY, None, detail=str(self))

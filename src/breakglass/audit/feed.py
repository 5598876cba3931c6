"""An audit source over HTTP: a ``breakglass.audit-feed/v1`` endpoint, such as the kill switch's.

Components that keep their own audit records in the shared format (the
``breakglass-killswitch`` distribution does, on purpose without importing
breakglass) serve them at ``GET <url>?after=<cursor>&limit=<n>`` with a bearer
token, oldest first::

    {"schema": "breakglass.audit-feed/v1", "records": [<breakglass.audit/v1 record>, ...],
     "cursor": "<opaque; pass it back as after>", "more": true}

Configured per feed in ``[audit.feeds.<name>]`` (``url``, ``token``), then pulled
like a provider: ``breakglass audit pull --provider <name>``.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from breakglass.audit.codec import record_from_dict
from breakglass.clock import SYSTEM_CLOCK, Clock
from breakglass.errors import AuditRecordError, AuditSourceError
from breakglass.retry import RetryPolicy, request_with_retries, safe_url
from breakglass.seams import AuditPage

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pydantic import SecretStr

FEED_SCHEMA = "breakglass.audit-feed/v1"
PAGE = 500
MAX_BODY = 32 * 1024 * 1024
"""A feed page larger than this is refused, not read into memory."""


@dataclass(frozen=True, slots=True)
class _Answer:
    status_code: int
    body: bytes


class FeedAuditSource:
    """A :class:`breakglass.seams.AuditSource` reading one feed, page by page."""

    def __init__(
        self,
        url: str,
        *,
        provider: str,
        token: SecretStr | None = None,
        timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.url = url
        self.provider = provider
        self._token = token
        self._timeout = timeout
        self._policy = policy or RetryPolicy()
        self._clock = clock

    def __repr__(self) -> str:
        return f"FeedAuditSource({safe_url(self.url)!r}, provider={self.provider!r})"

    def _get(self, after: str) -> _Answer:
        query = urllib.parse.urlencode({"after": after, "limit": PAGE})
        url = f"{self.url}{'&' if '?' in self.url else '?'}{query}"

        def send(timeout: float) -> _Answer:
            request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 -- http(s) only, checked in settings
            if self._token is not None:
                request.add_header("Authorization", f"Bearer {self._token.get_secret_value()}")
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                    body = response.read(MAX_BODY + 1)
                    return _Answer(response.status, body)
            except urllib.error.HTTPError as exc:
                with exc:
                    return _Answer(exc.code, b"")

        outcome = request_with_retries(
            send,
            url,
            self._policy,
            timeout=self._timeout,
            transient=(OSError,),
            describe=lambda exc, u: f"cannot reach {safe_url(u)} ({type(exc).__name__})",
            server_wait=lambda _response, _backoff: None,
        )
        if outcome.response is None:
            raise AuditSourceError(f"{self.provider} feed: {outcome.error}")
        answer = outcome.response
        if answer.status_code in (401, 403):
            raise AuditSourceError(
                f"{self.provider} feed {safe_url(self.url)} refused the token ({answer.status_code}); "
                f"check [audit.feeds.{self.provider}] token"
            )
        if answer.status_code != 200:
            raise AuditSourceError(
                f"{self.provider} feed {safe_url(self.url)} answered {answer.status_code}"
            )
        if len(answer.body) > MAX_BODY:
            raise AuditSourceError(f"{self.provider} feed: a page is larger than {MAX_BODY} bytes")
        return answer

    def _page(self, body: bytes) -> tuple[AuditPage, bool]:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise AuditSourceError(f"{self.provider} feed: the answer is not JSON") from None
        if not isinstance(data, dict) or data.get("schema") != FEED_SCHEMA:
            raise AuditSourceError(f"{self.provider} feed: not a {FEED_SCHEMA} page")
        entries, cursor, more = data.get("records"), data.get("cursor"), data.get("more")
        if (
            not isinstance(entries, list)
            or not isinstance(cursor, str)
            or not isinstance(more, bool)
        ):
            raise AuditSourceError(f"{self.provider} feed: records, cursor or more is missing")
        now = self._clock.now()
        records = []
        problems: list[str] = []
        for entry in entries:
            try:
                if not isinstance(entry, dict):
                    raise AuditRecordError("not a JSON object")  # noqa: TRY301 -- one path for every malformed entry
                record = record_from_dict(entry)
            except AuditRecordError as exc:
                what = entry.get("id") if isinstance(entry, dict) else None
                problems.append(f"entry {what!r}: {exc}")
                continue
            # pulled_at says when this bridge fetched it (ignored when comparing copies).
            records.append(dataclasses.replace(record, pulled_at=now))
        return AuditPage(records, cursor, malformed=len(problems), problems=problems), more

    def pull(self, cursor: str | None) -> Iterator[AuditPage]:
        """Yield the feed after ``cursor`` (all of it when ``None``), oldest first."""
        after = cursor or "0"
        while True:
            page, more = self._page(self._get(after).body)
            yield page
            if not more or page.cursor == after:
                return
            after = page.cursor or after

    def describe(self) -> dict[str, Any]:
        """Where the feed is (no token)."""
        return {"provider": self.provider, "url": safe_url(self.url)}
